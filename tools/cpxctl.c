/* cpxctl — the operator's and auditor's command-line tool. Commands live in
 * tools/cpxctl_*.c; this file only finds and runs them. */
#include "cpxctl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_COMMANDS 64

static struct command {
    const char *name;
    cpxctl_fn fn;
    const char *usage;
} commands[MAX_COMMANDS];
static int n_commands;

void cpxctl_register(const char *name, cpxctl_fn fn, const char *usage)
{
    if (n_commands < MAX_COMMANDS)
        commands[n_commands++] = (struct command){name, fn, usage};
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const struct command *)a)->name, ((const struct command *)b)->name);
}

static void usage(FILE *out)
{
    fprintf(out, "usage: cpxctl COMMAND [ARGS...]\n\ncommands:\n");
    qsort(commands, (size_t)n_commands, sizeof commands[0], by_name);
    for (int i = 0; i < n_commands; i++)
        fprintf(out, "  %-12s %s\n", commands[i].name, commands[i].usage);
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") ||
        !strcmp(argv[1], "help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? CPXCTL_USAGE : CPXCTL_OK;
    }
    for (int i = 0; i < n_commands; i++)
        if (!strcmp(commands[i].name, argv[1]))
            return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "cpxctl: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return CPXCTL_USAGE;
}
