from chaoslib import Row

def adapter_kill(build, rounds, rows):
    return []
def both_kill(build, rounds, rows):
    return []
def network_cut(build, rounds, rows):
    return []
def local_down(build, down_s):
    return []
