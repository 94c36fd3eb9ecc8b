/* cpxctl command registry: each tools/cpxctl_<group>.c registers its commands with
 * CPXCTL_COMMAND(name, fn, usage) and owns them; main only dispatches. */
#ifndef CPXCTL_H
#define CPXCTL_H

typedef int (*cpxctl_fn)(int argc, char **argv); /* argv[0] is the command name */

void cpxctl_register(const char *name, cpxctl_fn fn, const char *usage);

#define CPXCTL_COMMAND(name, fn, usage)                                          \
    __attribute__((constructor)) static void cpxctl_reg_##fn(void)               \
    {                                                                            \
        cpxctl_register(name, fn, usage);                                        \
    }

/* Exit codes: 0 ok, 1 the check failed (e.g. verify found tampering), 2 usage or
 * input error, 3 environment error (store, keys, network). */
enum { CPXCTL_OK = 0, CPXCTL_FAIL = 1, CPXCTL_USAGE = 2, CPXCTL_ENV = 3 };

#endif
