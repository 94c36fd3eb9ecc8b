from chaoslib import Row

def all_attacks(build, storm):
    return []
