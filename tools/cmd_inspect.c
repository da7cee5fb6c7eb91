/*
 * lmpress inspect: architecture, hyper-parameters, tensor table, totals and metadata of
 * an HF folder, a .safetensors file or index, or a .gguf file. Parses into
 * lmp_job_inspect_params; the job (jobs/inspect.h) reads and prints.
 */
#include "cli.h"
#include "jobs/inspect.h"

#include <stdio.h>

int cmd_inspect(int argc, char **argv)
{
    lmp_job_inspect_params p;
    lmp_job_inspect_default_params(&p);
    const cli_opt opts[] = {
        {"json", 0, OPT_FLAG, &p.json, NULL, "print one JSON object on stdout"},
        {"no-tensors", 0, OPT_FLAG, &p.no_tensors, NULL, "omit the per-tensor table"},
        {0},
    };
    const cli_cmd_info info = {
        "inspect", "MODEL [--json] [--no-tensors]",
        "Show the architecture and hyper-parameters, a tensor table (name, dtype, shape, bytes), totals\n"
        "(parameters, bytes, bits per weight) and metadata of PATH: an HF folder, a .safetensors file,\n"
        "a model.safetensors.index.json, or a .gguf file. A bare config.json is described too (what\n"
        "lmpress reads from it, the parameter count it implies).",
        NULL};
    const char **pos;
    int np, r = cli_parse(argc, argv, opts, &info, &pos, &np);
    if (r)
        return r > 0 ? 0 : 2;
    p.path = np == 1 ? pos[0] : NULL;
    int rc = lmp_job_inspect(&p);
    return rc ? cli_fail("inspect", rc) : 0;
}
