#include "cli.h"
#include <stdio.h>
int cmd_synth(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "not yet\n");
    return 2;
}
