/*
 * The library check functions the commands rely on (issue 14: validation only there):
 * defaults pass, each bad value is LMP_EINVAL with a message naming the lmpress option,
 * and the edges of each range are where the check says.
 */
#include "test.h"

#include "formats/formats.h"
#include "jobs/args.h"
#include "jobs/compare.h"
#include "jobs/dense_input.h"
#include "jobs/distill.h"
#include "jobs/eval.h"
#include "jobs/inspect.h"
#include "jobs/ppl.h"
#include "jobs/prune_prefs.h"
#include "jobs/prune_model.h"
#include "jobs/quantize_gguf.h"
#include "jobs/quantize_model.h"
#include "jobs/run.h"
#include "jobs/tasks.h"
#include "lib/distill/distill.h"
#include "lib/distill/tasks.h"
#include "lib/infer/infer.h"
#include "lib/infer/tokenizer.h"
#include "lib/io/synth.h"

/* rc is LMP_EINVAL and the message holds `word` */
static int refused(int rc, const char *word)
{
    return rc == LMP_EINVAL && strstr(lmp_errmsg(), word) != NULL;
}

static void test_qmodel(void)
{
    lmp_qmodel_quant_params p;
    lmp_qmodel_quant_default_params(&p);
    p.calib_path = "x.txt";
    CHECK(lmp_qmodel_quant_check(&p) == 0, "defaults refused: %s", lmp_errmsg());
    p.pipe.bits = 9;
    CHECK(refused(lmp_qmodel_quant_check(&p), "--bits 9"), "bits 9: %s", lmp_errmsg());
    p.pipe.bits = 2;
    CHECK(lmp_qmodel_quant_check(&p) == 0, "bits 2 refused: %s", lmp_errmsg());
    p.pipe.bits = 8;
    CHECK(lmp_qmodel_quant_check(&p) == 0, "bits 8 refused: %s", lmp_errmsg());
    p.pipe.group_size = 0;
    CHECK(refused(lmp_qmodel_quant_check(&p), "--group-size"), "group 0: %s", lmp_errmsg());
    p.pipe.group_size = -1;
    CHECK(lmp_qmodel_quant_check(&p) == 0, "group -1 refused: %s", lmp_errmsg());
    p.pipe.damp = 1.0f;
    CHECK(refused(lmp_qmodel_quant_check(&p), "--damp"), "damp 1: %s", lmp_errmsg());
    p.pipe.damp = 0.01f;
    p.calib_path = NULL;
    CHECK(refused(lmp_qmodel_quant_check(&p), "--calib"), "gptq without calib: %s", lmp_errmsg());
    p.pipe.method = LMP_QMETHOD_RTN;
    CHECK(refused(lmp_qmodel_quant_check(&p), "--act-order"), "rtn with act-order: %s", lmp_errmsg());
    p.pipe.act_order = false;
    CHECK(lmp_qmodel_quant_check(&p) == 0, "rtn without calib refused: %s", lmp_errmsg());
    p.pipe.awq_clip = false;
    CHECK(refused(lmp_qmodel_quant_check(&p), "AWQ only"), "no-clip with rtn: %s", lmp_errmsg());
    p.pipe.awq_clip = true;
    p.pipe.sym = false;
    p.write.format = LMP_QFMT_GPTQ_V1;
    CHECK(refused(lmp_qmodel_quant_check(&p), "gptq_v2"), "asym v1: %s", lmp_errmsg());
    p.write.format = LMP_QFMT_AWQ_GEMM;
    p.pipe.bits = 3;
    CHECK(refused(lmp_qmodel_quant_check(&p), "4-bit"), "awq 3 bits: %s", lmp_errmsg());
    p.pipe.bits = 4;
    p.calib.n_samples = 0;
    CHECK(refused(lmp_qmodel_quant_check(&p), "--calib-samples"), "0 samples: %s", lmp_errmsg());
    p.calib.n_samples = 1;
    p.calib.seq_len = 1;
    CHECK(refused(lmp_qmodel_quant_check(&p), "--calib-seqlen"), "seqlen 1: %s", lmp_errmsg());
    p.calib.seq_len = 2;
    CHECK(lmp_qmodel_quant_check(&p) == 0, "seqlen 2 refused: %s", lmp_errmsg());
}

static void test_prune(void)
{
    lmp_prune_model_params p;
    lmp_prune_model_default_params(&p);
    p.calib_path = "x.txt";
    CHECK(lmp_prune_model_check(&p) == 0, "defaults refused: %s", lmp_errmsg());
    p.prune.spec.sparsity = 1.0;
    CHECK(refused(lmp_prune_model_check(&p), "--sparsity"), "sparsity 1: %s", lmp_errmsg());
    p.prune.spec.sparsity = 0.5;
    p.prune.spec.qsym = false;
    CHECK(refused(lmp_prune_model_check(&p), "--then-quantize"), "asym without then-quantize: %s", lmp_errmsg());
    p.prune.spec.qsym = true;
    p.prune.spec.qbits = 4;
    CHECK(refused(lmp_prune_model_check(&p), "sparsegpt"), "then-quantize with wanda: %s", lmp_errmsg());
    p.prune.spec.method = LMP_PRUNE_SPARSEGPT;
    CHECK(lmp_prune_model_check(&p) == 0, "sparsegpt 4-bit refused: %s", lmp_errmsg());
    p.prune.spec.qbits = 0;
    p.structured = true;
    p.ratio = 1.0;
    CHECK(refused(lmp_prune_model_check(&p), "--ratio"), "ratio 1: %s", lmp_errmsg());
    p.ratio = 0.25;
    p.calib_path = NULL;
    CHECK(refused(lmp_prune_model_check(&p), "--calib"), "structured without calib: %s", lmp_errmsg());
}

static void test_small(void)
{
    lmp_sampler_params sp = lmp_sampler_default_params();
    CHECK(lmp_sampler_check(&sp) == 0, "sampler defaults refused");
    sp.top_p = 0;
    CHECK(refused(lmp_sampler_check(&sp), "--top-p"), "top-p 0: %s", lmp_errmsg());
    sp.top_p = 1;
    sp.temperature = -1;
    CHECK(refused(lmp_sampler_check(&sp), "--temp"), "temp -1: %s", lmp_errmsg());

    lmp_task_params tp = lmp_task_default_params();
    CHECK(lmp_task_check(&tp) == 0, "task defaults refused");
    tp.limit = -1;
    CHECK(refused(lmp_task_check(&tp), "--limit"), "limit -1: %s", lmp_errmsg());

    lmp_compare_params cp = lmp_compare_default_params();
    cp.task = lmp_task_default_params();
    CHECK(lmp_compare_check(&cp) == 0, "compare defaults refused: %s", lmp_errmsg());
    cp.chunks = -1;
    CHECK(refused(lmp_compare_check(&cp), "--chunks"), "chunks -1: %s", lmp_errmsg());

    lmp_distill_params dp = lmp_distill_default_params();
    CHECK(lmp_distill_check(&dp) == 0, "distill defaults refused: %s", lmp_errmsg());
    dp.top_k = 0;
    CHECK(refused(lmp_distill_check(&dp), "--full"), "top-k 0 without full: %s", lmp_errmsg());
    dp.full = true;
    CHECK(lmp_distill_check(&dp) == 0, "top-k 0 with full refused: %s", lmp_errmsg());
    dp.temperature = 0;
    CHECK(refused(lmp_distill_check(&dp), "--temperature"), "temperature 0: %s", lmp_errmsg());
}

static void test_gguf_job(void)
{
    lmp_job_gguf_params p;
    lmp_job_gguf_default_params(&p);
    CHECK(p.calib.mode == LMP_CALIB_CHUNKS, "imatrix windows are not llama-imatrix's chunks by default");
    CHECK(refused(lmp_job_gguf_check(&p, "o.gguf"), "--type"), "no type: %s", lmp_errmsg());
    p.q.type = "q4_km";
    CHECK(refused(lmp_job_gguf_check(&p, "o.gguf"), "did you mean 'q4_k_m'"), "suggestion: %s", lmp_errmsg());
    p.q.type = "q4_k_m";
    CHECK(lmp_job_gguf_check(&p, "o.gguf") == 0, "q4_k_m refused: %s", lmp_errmsg());
    CHECK(refused(lmp_job_gguf_check(&p, "o.bin"), ".gguf"), "o.bin accepted: %s", lmp_errmsg());
    CHECK(lmp_job_gguf_check(&p, "O.GGUF") == 0, "O.GGUF refused: %s", lmp_errmsg());
    p.imatrix_file = "a.dat";
    p.imatrix_calib = "t.txt";
    CHECK(refused(lmp_job_gguf_check(&p, "o.gguf"), "conflict"), "both imatrix sources: %s", lmp_errmsg());
    p.imatrix_file = NULL;
    p.calib.n_samples = 0;
    CHECK(refused(lmp_job_gguf_check(&p, "o.gguf"), "--calib-samples"), "0 chunks: %s", lmp_errmsg());
    p.calib.n_samples = 4;
    p.imatrix_calib = NULL;
    p.imatrix_out = "o.dat";
    CHECK(refused(lmp_job_gguf_check(&p, "o.gguf"), "--imatrix-calib"), "imatrix-out alone: %s", lmp_errmsg());
}

static void test_dense_input(void)
{
    /* an f32 model passes; a path that does not open is the job's to report */
    CHECK(lmp_job_dense_input_check("/nonexistent/model.gguf", NULL) == 0, "missing file refused here");
    const char *m = fixture("models/stories260K");
    if (!m) {
        SKIP("fixtures absent: stories260K");
        return;
    }
    CHECK(lmp_job_dense_input_check(m, NULL) == 0, "stories260K refused: %s", lmp_errmsg());
}

static void test_ppl(void)
{
    lmp_ppl_params p = lmp_ppl_default_params();
    CHECK(lmp_ppl_check(&p) == 0, "ppl defaults refused: %s", lmp_errmsg());
    p.ctx = -1;
    CHECK(refused(lmp_ppl_check(&p), "--ctx -1"), "ctx -1: %s", lmp_errmsg());
    p.ctx = 1 << 24;
    CHECK(lmp_ppl_check(&p) == 0, "ctx 2^24 refused: %s", lmp_errmsg());
    p.ctx = (1 << 24) + 1;
    CHECK(refused(lmp_ppl_check(&p), "--ctx"), "ctx 2^24+1: %s", lmp_errmsg());
    p.ctx = 0;
    p.max_chunks = -1;
    CHECK(refused(lmp_ppl_check(&p), "--chunks -1"), "chunks -1: %s", lmp_errmsg());
    p.max_chunks = 0;
    p.protocol = (lmp_ppl_protocol)3;
    CHECK(refused(lmp_ppl_check(&p), "--protocol"), "protocol 3: %s", lmp_errmsg());
    p.protocol = LMP_PPL_WINDOWS;
    CHECK(lmp_ppl_check(&p) == 0, "windows refused: %s", lmp_errmsg());
}

static void test_kld(void)
{
    lmp_kld_params p = lmp_kld_default_params();
    CHECK(lmp_kld_check(&p) == 0, "eval defaults refused: %s", lmp_errmsg());
    p.max_seqs = -1;
    CHECK(refused(lmp_kld_check(&p), "--chunks -1"), "chunks -1: %s", lmp_errmsg());
    p.max_seqs = 1 << 30;
    CHECK(lmp_kld_check(&p) == 0, "chunks 2^30 refused: %s", lmp_errmsg());
    p.skip = -1;
    CHECK(refused(lmp_kld_check(&p), "--skip -1"), "skip -1: %s", lmp_errmsg());
    p.skip = 1 << 22;
    CHECK(lmp_kld_check(&p) == 0, "skip 2^22 refused: %s", lmp_errmsg());
    p.skip = (1 << 22) + 1;
    CHECK(refused(lmp_kld_check(&p), "--skip"), "skip 2^22+1: %s", lmp_errmsg());
}

static void test_synth(void)
{
    lmp_synth_params p;
    lmp_synth_default_params(&p);
    CHECK(lmp_synth_check(&p) == 0, "synth defaults refused: %s", lmp_errmsg());
    p.preset = "nope";
    CHECK(refused(lmp_synth_check(&p), "unknown preset 'nope'"), "preset nope: %s", lmp_errmsg());
    p.preset = "tiny";
    CHECK(lmp_synth_check(&p) == 0, "tiny refused: %s", lmp_errmsg());
    p.config_path = "config.json";
    CHECK(refused(lmp_synth_check(&p), "--config"), "both: %s", lmp_errmsg());
    p.config_path = NULL;
    p.layers = -1;
    CHECK(refused(lmp_synth_check(&p), "--layers -1"), "layers -1: %s", lmp_errmsg());
    p.layers = LMP_MAX_LAYERS;
    CHECK(lmp_synth_check(&p) == 0, "layers max refused: %s", lmp_errmsg());
    p.layers = LMP_MAX_LAYERS + 1;
    CHECK(refused(lmp_synth_check(&p), "--layers"), "layers max+1: %s", lmp_errmsg());
    p.layers = 0;
    p.shard_mb = 0;
    CHECK(refused(lmp_synth_check(&p), "--shard-mb 0"), "shard 0: %s", lmp_errmsg());
    p.shard_mb = 1;
    CHECK(lmp_synth_check(&p) == 0, "shard 1 refused: %s", lmp_errmsg());
    p.dtype = LMP_DT_Q8_0;
    CHECK(refused(lmp_synth_check(&p), "--dtype"), "dtype q8_0: %s", lmp_errmsg());
    p.dtype = LMP_DT_BF16;
    lmp_config c;
    p.layers = 1;
    CHECK(lmp_synth_config(&p, &c) == 0 && c.n_layers == 1, "tiny at 1 layer: %s", lmp_errmsg());
}

static void test_tokenize(void)
{
    lmp_tokenize_params p;
    lmp_tokenize_default_params(&p);
    CHECK(refused(lmp_tokenize_check(&p), "exactly one of --prompt"), "neither: %s", lmp_errmsg());
    p.text = "a";
    CHECK(lmp_tokenize_check(&p) == 0, "text refused: %s", lmp_errmsg());
    p.file = "x.txt";
    CHECK(refused(lmp_tokenize_check(&p), "-f"), "both: %s", lmp_errmsg());
    p.text = NULL;
    CHECK(lmp_tokenize_check(&p) == 0, "file refused: %s", lmp_errmsg());
}

static void test_run_job(void)
{
    lmp_job_run_params p;
    lmp_job_run_default_params(&p);
    p.model = "m";
    CHECK(refused(lmp_job_run_check(&p), "-p PROMPT"), "no prompt: %s", lmp_errmsg());
    p.prompt = "Once";
    p.model = NULL;
    CHECK(refused(lmp_job_run_check(&p), "need one MODEL"), "no model: %s", lmp_errmsg());
    p.model = "m";
    CHECK(lmp_job_run_check(&p) == 0 && p.n_predict == 256, "run defaults refused: %s", lmp_errmsg());
    p.n_predict = -1;
    CHECK(refused(lmp_job_run_check(&p), "-n -1"), "n -1: %s", lmp_errmsg());
    p.n_predict = 1000000;
    CHECK(lmp_job_run_check(&p) == 0, "n 10^6 refused: %s", lmp_errmsg());
    p.n_predict = 1000001;
    CHECK(refused(lmp_job_run_check(&p), "-n"), "n 10^6+1: %s", lmp_errmsg());
    p.n_predict = 0;
    p.ctx = -1;
    CHECK(refused(lmp_job_run_check(&p), "--ctx -1"), "ctx -1: %s", lmp_errmsg());
    p.ctx = 0;
    p.sampler.top_p = 0;
    CHECK(refused(lmp_job_run_check(&p), "--top-p"), "top-p 0 (sampler check): %s", lmp_errmsg());
}

static void test_tasks_job(void)
{
    lmp_job_tasks_params p;
    lmp_job_tasks_default_params(&p);
    p.model = "m";
    CHECK(refused(lmp_job_tasks_check(&p), "--task"), "no task: %s", lmp_errmsg());
    const char *ok[] = {"arc=arc.jsonl", "hs=hs.txt"};
    p.specs = ok;
    p.n_tasks = 2;
    CHECK(lmp_job_tasks_check(&p) == 0, "two tasks refused: %s", lmp_errmsg());
    p.model = NULL;
    CHECK(refused(lmp_job_tasks_check(&p), "need one MODEL"), "no model: %s", lmp_errmsg());
    p.model = "m";
    p.protocol = "llama.cpp";
    CHECK(lmp_job_tasks_check(&p) == 0, "llama.cpp alias refused: %s", lmp_errmsg());
    p.protocol = "gptq";
    CHECK(refused(lmp_job_tasks_check(&p), "unknown protocol 'gptq'"), "protocol gptq: %s", lmp_errmsg());
    p.protocol = "lm-eval";
    const char *twice[] = {"a=x.jsonl", "a=y.jsonl"};
    p.specs = twice;
    CHECK(refused(lmp_job_tasks_check(&p), "given twice"), "name twice: %s", lmp_errmsg());
    const char *bad[] = {"a=x.jsonl", "=y.jsonl"};
    p.specs = bad;
    CHECK(refused(lmp_job_tasks_check(&p), "NAME=FILE"), "empty name: %s", lmp_errmsg());
    const char *quote[] = {"a\"b=x.jsonl"};
    p.specs = quote;
    p.n_tasks = 1;
    CHECK(refused(lmp_job_tasks_check(&p), "no quotes"), "quote in name: %s", lmp_errmsg());
    p.specs = ok;
    p.task.limit = -1;
    CHECK(lmp_job_tasks_check(&p) == lmp_task_check(&p.task), "task ranges not lmp_task_check's");
}

static void test_convert(void)
{
    lmp_convert_params p;
    lmp_convert_default_params(&p);
    CHECK(lmp_convert_check(&p) == 0 && p.dtype == -1, "convert defaults refused: %s", lmp_errmsg());
    p.dtype = LMP_DT_BF16;
    CHECK(lmp_convert_check(&p) == 0, "bf16 refused: %s", lmp_errmsg());
    p.dtype = LMP_DT_Q8_0;
    CHECK(refused(lmp_convert_check(&p), "--dtype"), "q8_0: %s", lmp_errmsg());
}

/* quantize --type: the command's arguments and the size target (lmp_job_gguf_check_args) */
static void test_gguf_args(void)
{
    lmp_job_gguf_params p;
    lmp_job_gguf_default_params(&p);
    p.q.type = "q4_0";
    CHECK(lmp_job_gguf_check_args("m", "o.gguf", &p) == 0, "defaults refused: %s", lmp_errmsg());
    CHECK(refused(lmp_job_gguf_check_args(NULL, "o.gguf", &p), "need MODEL"), "no model: %s", lmp_errmsg());
    CHECK(refused(lmp_job_gguf_check_args("m", NULL, &p), "-o OUT"), "no out: %s", lmp_errmsg());
    p.dry_run = true;
    CHECK(refused(lmp_job_gguf_check_args("m", "o.gguf", &p), "--dry-run needs"), "dry run alone: %s", lmp_errmsg());
    p.target_bpw = 4;
    CHECK(lmp_job_gguf_check_args("m", NULL, &p) == 0, "dry run without -o refused: %s", lmp_errmsg());
    p.dry_run = false;
    CHECK(refused(lmp_job_gguf_check_args("m", NULL, &p), "-o OUT"), "target without -o: %s", lmp_errmsg());
    p.target_size = "1M";
    CHECK(refused(lmp_job_gguf_check_args("m", "o.gguf", &p), "each other"), "both targets: %s", lmp_errmsg());
    p.target_size = NULL;
    p.target_bpw = 64;
    CHECK(lmp_job_gguf_check_args("m", "o.gguf", &p) == 0, "bpw 64 refused: %s", lmp_errmsg());
    p.target_bpw = 64.5;
    CHECK(refused(lmp_job_gguf_check_args("m", "o.gguf", &p), "--target-bpw 64.5"), "bpw 64.5: %s", lmp_errmsg());
    p.target_bpw = 0;
    CHECK(refused(lmp_job_gguf_check_args("m", "o.gguf", &p), "--target-bpw 0"), "bpw 0: %s", lmp_errmsg());
    p.target_bpw = 4;
    p.target_probes = 16;
    CHECK(lmp_job_gguf_check_args("m", "o.gguf", &p) == 0, "probes 16 refused: %s", lmp_errmsg());
    p.target_probes = 17;
    CHECK(refused(lmp_job_gguf_check_args("m", "o.gguf", &p), "--target-probes 17"), "probes 17: %s", lmp_errmsg());
    p.target_probes = -2;
    CHECK(refused(lmp_job_gguf_check_args("m", "o.gguf", &p), "--target-probes -2"), "probes -2: %s", lmp_errmsg());
    p.target_probes = 0;
    p.target_bpw = -1;
    CHECK(refused(lmp_job_gguf_check_args("m", "o.gguf", &p), "need --target-bpw"), "probes alone: %s", lmp_errmsg());
    p.target_probes = -1;
    p.target_calib = "c.txt";
    CHECK(refused(lmp_job_gguf_check_args("m", "o.gguf", &p), "need --target-bpw"), "calib alone: %s", lmp_errmsg());
    p.target_calib = NULL;
    p.target_size = "12Q";
    CHECK(refused(lmp_job_gguf_check_args("m", "o.gguf", &p), "--target-size '12Q'"), "size 12Q: %s", lmp_errmsg());
    p.target_size = "1.5GiB";
    CHECK(lmp_job_gguf_check_args("m", "o.gguf", &p) == 0, "size 1.5GiB refused: %s", lmp_errmsg());
    double b = 0;
    CHECK(lmp_job_parse_bytes("600M", &b) && b == 6e8, "600M: %g", b);
    CHECK(lmp_job_parse_bytes("1.5GiB", &b) && b == 1.5 * 1073741824.0, "1.5GiB: %g", b);
    CHECK(lmp_job_parse_bytes("2kb", &b) && b == 2e3, "2kb: %g", b);
    CHECK(!lmp_job_parse_bytes("1.5gib", &b) && !lmp_job_parse_bytes("0", &b) && !lmp_job_parse_bytes("", &b) &&
              !lmp_job_parse_bytes("-1M", &b) && !lmp_job_parse_bytes("5X", &b),
          "bad sizes accepted");
}

/* quantize --method: arguments (lmp_qmodel_quant_check_args) and the method-dependent
 * preferences (lmp_qmodel_quant_prefs) */
static void test_qmodel_args(void)
{
    lmp_qmodel_quant_params p;
    lmp_qmodel_quant_default_params(&p);
    CHECK(lmp_qmodel_quant_check_args("m", "outdir", &p) == 0, "folder refused: %s", lmp_errmsg());
    CHECK(refused(lmp_qmodel_quant_check_args(NULL, "outdir", &p), "need MODEL"), "no model: %s", lmp_errmsg());
    CHECK(refused(lmp_qmodel_quant_check_args("m", NULL, &p), "-o OUTDIR"), "no out: %s", lmp_errmsg());
    CHECK(refused(lmp_qmodel_quant_check_args("m", "x.bin", &p), "file name"), "x.bin: %s", lmp_errmsg());
    CHECK(refused(lmp_qmodel_quant_check_args("m", "x.GGUF", &p), "file name"), "x.GGUF: %s", lmp_errmsg());
    /* the size target's texts (lmp_qmodel_quant_targets) */
    CHECK(lmp_qmodel_quant_targets(&p) == 0 && !p.target_bits && !p.target_groups && !p.target_size,
          "no target texts: %s", lmp_errmsg());
    p.target_size_text = "1.5M";
    p.target_bits_text = "4,8";
    p.target_groups_text = "128,-1";
    CHECK(lmp_qmodel_quant_targets(&p) == 0 && p.target_size == 1500000 && p.n_target_bits == 2 &&
              p.target_bits[1] == 8 && p.n_target_groups == 2 && p.target_groups[1] == -1,
          "targets read: %s", lmp_errmsg());
    p.target_size_text = "lots";
    CHECK(refused(lmp_qmodel_quant_targets(&p), "--target-size"), "bad size: %s", lmp_errmsg());
    p.target_size_text = NULL;
    p.target_bits_text = "4,,8";
    CHECK(refused(lmp_qmodel_quant_targets(&p), "--target-bits"), "bad bits list: %s", lmp_errmsg());
    p.target_bits_text = NULL;
    p.target_groups_text = "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17";
    CHECK(refused(lmp_qmodel_quant_targets(&p), "--target-groups"), "17 groups: %s", lmp_errmsg());
    lmp_qmodel_quant_default_params(&p);
    p.pipe.method = LMP_QMETHOD_RTN;
    CHECK(lmp_qmodel_quant_prefs(&p, -1, -1, NULL, NULL, false) == 0 && p.pipe.sym && !p.pipe.act_order &&
              p.write.format == LMP_QFMT_GPTQ_V1 && !p.write.convert_dense,
          "rtn defaults: %s", lmp_errmsg());
    CHECK(refused(lmp_qmodel_quant_prefs(&p, -1, 1, NULL, NULL, false), "--act-order"), "rtn act-order: %s",
          lmp_errmsg());
    CHECK(lmp_qmodel_quant_prefs(&p, 0, -1, "gptq", "bf16", false) == 0 && !p.pipe.sym &&
              p.write.format == LMP_QFMT_GPTQ_V2 && p.write.convert_dense && p.write.dense_dtype == LMP_DT_BF16,
          "rtn asym gptq bf16: %s", lmp_errmsg());
    CHECK(lmp_qmodel_quant_prefs(&p, -1, -1, NULL, "f16", false) == 0 && p.write.dense_dtype == LMP_DT_F16,
          "f16: %s", lmp_errmsg());
    CHECK(lmp_qmodel_quant_prefs(&p, -1, -1, "nope", NULL, false) == LMP_EINVAL, "format nope accepted");
    p.write.convert_dense = false;
    p.calib_path = "c.txt";
    p.pipe.method = LMP_QMETHOD_GPTQ;
    CHECK(lmp_qmodel_quant_prefs(&p, -1, -1, NULL, NULL, false) == 0 && p.pipe.sym && p.pipe.act_order,
          "gptq defaults: %s", lmp_errmsg());
    p.pipe.method = LMP_QMETHOD_AWQ;
    CHECK(lmp_qmodel_quant_prefs(&p, -1, -1, NULL, NULL, false) == 0 && !p.pipe.sym && !p.pipe.act_order &&
              p.write.format == LMP_QFMT_AWQ_GEMM,
          "awq defaults: %s", lmp_errmsg());
}

/* prune: lmp_prune_prefs_apply, one refusal per rule */
static void test_prune_prefs(void)
{
    lmp_prune_prefs a;
    lmp_prune_model_params p;
#define FRESH()                                                                                                  \
    do {                                                                                                         \
        lmp_prune_prefs_default(&a);                                                                             \
        lmp_prune_model_default_params(&p);                                                                      \
        a.model = "m";                                                                                           \
        a.out = "o";                                                                                             \
        a.method = LMP_PRUNE_MAGNITUDE;                                                                          \
        a.sparsity = 0.5;                                                                                        \
    } while (0)
    FRESH();
    CHECK(lmp_prune_prefs_apply(&a, &p) == 0 && !p.structured && p.prune.spec.sparsity == 0.5 &&
              p.out == LMP_PRUNE_OUT_SAFETENSORS,
          "magnitude 0.5 refused: %s", lmp_errmsg());
    FRESH();
    a.model = NULL;
    CHECK(refused(lmp_prune_prefs_apply(&a, &p), "need MODEL"), "no model: %s", lmp_errmsg());
    FRESH();
    a.out = NULL;
    CHECK(refused(lmp_prune_prefs_apply(&a, &p), "-o OUT"), "no out: %s", lmp_errmsg());
    FRESH();
    a.structured = LMP_STRUCT_FFN;
    CHECK(refused(lmp_prune_prefs_apply(&a, &p), "exactly one of --method"), "both paths: %s", lmp_errmsg());
    FRESH();
    a.method = -1;
    CHECK(refused(lmp_prune_prefs_apply(&a, &p), "exactly one of --method"), "no path: %s", lmp_errmsg());
    FRESH();
    a.pattern = "2:4";
    CHECK(refused(lmp_prune_prefs_apply(&a, &p), "--sparsity S and --pattern"), "both: %s", lmp_errmsg());
    FRESH();
    a.sparsity = -1;
    CHECK(refused(lmp_prune_prefs_apply(&a, &p), "--sparsity S and --pattern"), "neither: %s", lmp_errmsg());
    a.pattern = "2:4";
    CHECK(lmp_prune_prefs_apply(&a, &p) == 0 && p.prune.spec.n == 2 && p.prune.spec.m == 4, "2:4: %s", lmp_errmsg());
    const char *bad[] = {"4:2", "2:2", "0:4", "2:65", "2/4", "2:", "x:4", "2:4x"};
    for (int i = 0; i < 8; i++) {
        FRESH();
        a.sparsity = -1;
        a.pattern = bad[i];
        CHECK(refused(lmp_prune_prefs_apply(&a, &p), "--pattern must be N:M"), "pattern %s: %s", bad[i],
              lmp_errmsg());
    }
    FRESH();
    a.method = -1;
    a.structured = LMP_STRUCT_FFN;
    a.sparsity = -1;
    p.calib_path = "c.txt";
    CHECK(refused(lmp_prune_prefs_apply(&a, &p), "--ratio R"), "no ratio: %s", lmp_errmsg());
    p.ratio = 0.25;
    CHECK(lmp_prune_prefs_apply(&a, &p) == 0 && p.structured && p.kind == LMP_STRUCT_FFN, "ffn 0.25: %s",
          lmp_errmsg());
    FRESH();
    a.qformat = "nope";
    CHECK(lmp_prune_prefs_apply(&a, &p) == LMP_EINVAL, "qformat nope accepted");
    FRESH();
    a.out = "o.gguf";
    CHECK(lmp_prune_prefs_apply(&a, &p) == 0 && p.out == LMP_PRUNE_OUT_GGUF, "gguf by name: %s", lmp_errmsg());
    a.format = 0; /* safetensors */
    CHECK(refused(lmp_prune_prefs_apply(&a, &p), "file name"), "safetensors to o.gguf: %s", lmp_errmsg());
    FRESH();
    a.format = 2; /* gguf */
    CHECK(refused(lmp_prune_prefs_apply(&a, &p), "must end in .gguf"), "gguf to a folder: %s", lmp_errmsg());
    FRESH();
    a.format = 3; /* ct */
    CHECK(lmp_prune_prefs_apply(&a, &p) == 0 && p.out == LMP_PRUNE_OUT_CT, "ct: %s", lmp_errmsg());
    FRESH();
    a.method = LMP_PRUNE_WANDA;
    CHECK(refused(lmp_prune_prefs_apply(&a, &p), "--calib"), "wanda without calib (model check): %s", lmp_errmsg());
#undef FRESH
}

/* ppl, eval, inspect, distill export / merge, compare: the jobs' checks */
static void test_job_checks(void)
{
    lmp_job_ppl_params pp;
    lmp_job_ppl_default_params(&pp);
    CHECK(refused(lmp_job_ppl_check(&pp), "need one MODEL and -f TEXT"), "ppl nothing: %s", lmp_errmsg());
    pp.model = "m";
    CHECK(refused(lmp_job_ppl_check(&pp), "-f TEXT"), "ppl no text: %s", lmp_errmsg());
    pp.text = "t.txt";
    CHECK(lmp_job_ppl_check(&pp) == 0, "ppl defaults refused: %s", lmp_errmsg());
    pp.n_loras = 1;
    CHECK(refused(lmp_job_ppl_check(&pp), "--lora"), "ppl adapters without paths: %s", lmp_errmsg());
    pp.n_loras = 0;
    pp.ppl.ctx = -3;
    CHECK(refused(lmp_job_ppl_check(&pp), "--ctx -3"), "ppl ctx -3 (lmp_ppl_check): %s", lmp_errmsg());
    pp.ppl.ctx = 0;
    pp.model = NULL;
    CHECK(refused(lmp_job_ppl_check(&pp), "MODEL"), "ppl no model: %s", lmp_errmsg());

    lmp_job_eval_params ep;
    lmp_job_eval_default_params(&ep);
    ep.model = "m";
    CHECK(refused(lmp_job_eval_check(&ep), "--base FILE"), "eval no base: %s", lmp_errmsg());
    ep.base = "b.h5";
    CHECK(lmp_job_eval_check(&ep) == 0, "eval defaults refused: %s", lmp_errmsg());
    ep.kld.skip = -1;
    CHECK(refused(lmp_job_eval_check(&ep), "--skip"), "eval skip -1 (lmp_kld_check): %s", lmp_errmsg());
    ep.kld.skip = 0;
    ep.model = NULL;
    CHECK(refused(lmp_job_eval_check(&ep), "MODEL"), "eval no model: %s", lmp_errmsg());

    lmp_job_inspect_params ip;
    lmp_job_inspect_default_params(&ip);
    CHECK(refused(lmp_job_inspect_check(&ip), "PATH"), "inspect no path: %s", lmp_errmsg());
    CHECK(refused(lmp_job_inspect(&ip), "PATH"), "inspect job without path: %s", lmp_errmsg());
    ip.path = "m";
    CHECK(lmp_job_inspect_check(&ip) == 0, "inspect path refused: %s", lmp_errmsg());

    lmp_job_export_params xp;
    lmp_job_export_default_params(&xp);
    CHECK(xp.distill.ctx == 0, "export default ctx %d, not 0 (the model's up to 512)", xp.distill.ctx);
    xp.teacher = "m";
    xp.text = "t.txt";
    CHECK(refused(lmp_job_export_check(&xp), "-o FILE"), "export no out: %s", lmp_errmsg());
    xp.out = "l.h5";
    CHECK(lmp_job_export_check(&xp) == 0, "export defaults refused: %s", lmp_errmsg());
    xp.text = NULL;
    CHECK(refused(lmp_job_export_check(&xp), "-f TEXT"), "export no text: %s", lmp_errmsg());
    xp.text = "t.txt";
    xp.teacher = NULL;
    CHECK(refused(lmp_job_export_check(&xp), "TEACHER"), "export no teacher: %s", lmp_errmsg());
    xp.teacher = "m";
    const char *shards_ok[] = {"0/1", "1/2", "3/4"}, *shards_bad[] = {"2/2", "1/0", "a/2", "1", "-1/2", "0/2x"};
    for (int i = 0; i < 3; i++) {
        xp.shard = shards_ok[i];
        CHECK(lmp_job_export_check(&xp) == 0, "shard %s refused: %s", shards_ok[i], lmp_errmsg());
    }
    for (int i = 0; i < 6; i++) {
        xp.shard = shards_bad[i];
        CHECK(refused(lmp_job_export_check(&xp), "--shard"), "shard %s: %s", shards_bad[i], lmp_errmsg());
    }
    xp.shard = NULL;
    xp.distill.temperature = 0;
    CHECK(refused(lmp_job_export_check(&xp), "--temperature"), "temperature 0 (lmp_distill_check): %s", lmp_errmsg());
    CHECK(refused(lmp_job_merge_logits_check("o.h5", 0), "at least one IN"), "merge no input: %s", lmp_errmsg());
    CHECK(refused(lmp_job_merge_logits_check(NULL, 1), "need OUT"), "merge no out: %s", lmp_errmsg());
    CHECK(lmp_job_merge_logits_check("o.h5", 1) == 0, "merge one input refused: %s", lmp_errmsg());

    lmp_job_compare_params cp;
    lmp_job_compare_default_params(&cp);
    const char *variants[] = {"v1"}, *tasks[] = {"arc=a.jsonl"}, *bad_tasks[] = {"arc"};
    cp.base = "b";
    cp.variants = variants;
    cp.n_variants = 1;
    cp.text = "t.txt";
    cp.out = "rep";
    CHECK(lmp_job_compare_check(&cp) == 0, "compare defaults refused: %s", lmp_errmsg());
    cp.n_variants = 0;
    CHECK(refused(lmp_job_compare_check(&cp), "at least one VARIANT"), "no variant: %s", lmp_errmsg());
    cp.n_variants = 1;
    cp.out = NULL;
    CHECK(refused(lmp_job_compare_check(&cp), "-o DIR"), "no report dir: %s", lmp_errmsg());
    cp.out = "rep";
    cp.text = NULL;
    CHECK(refused(lmp_job_compare_check(&cp), "-f TEXT"), "no text: %s", lmp_errmsg());
    cp.text = "t.txt";
    cp.base = NULL;
    CHECK(refused(lmp_job_compare_check(&cp), "BASE"), "no base: %s", lmp_errmsg());
    cp.base = "b";
    cp.protocol = "nope";
    CHECK(refused(lmp_job_compare_check(&cp), "unknown protocol 'nope'"), "protocol nope: %s", lmp_errmsg());
    cp.protocol = "windows";
    cp.task_protocol = "nope";
    CHECK(refused(lmp_job_compare_check(&cp), "unknown task protocol 'nope'"), "task protocol: %s", lmp_errmsg());
    cp.task_protocol = "llamacpp";
    cp.tasks = tasks;
    cp.n_tasks = 1;
    CHECK(lmp_job_compare_check(&cp) == 0, "a task refused: %s", lmp_errmsg());
    cp.tasks = bad_tasks;
    CHECK(refused(lmp_job_compare_check(&cp), "expected NAME=FILE"), "task without =: %s", lmp_errmsg());
    cp.n_tasks = 0;
    cp.cmp.chunks = -1;
    CHECK(refused(lmp_job_compare_check(&cp), "--chunks"), "chunks -1 (lmp_compare_check): %s", lmp_errmsg());
}

/* jobs/args.h: the rules every command's arguments follow */
static void test_args(void)
{
    CHECK(lmp_job_is_gguf_name("a/b.GGUF") && !lmp_job_is_gguf_name("a.gguf/b") && !lmp_job_is_gguf_name(".gguf"),
          "gguf names");
    CHECK(lmp_job_filelike_name("x.bin") && lmp_job_filelike_name("d/x.SafeTensors") &&
              !lmp_job_filelike_name("out-4bit") && !lmp_job_filelike_name("a.b/out"),
          "file-like names");
    CHECK(refused(lmp_job_threads(-1), "--threads -1"), "threads -1: %s", lmp_errmsg());
    CHECK(lmp_job_threads(0) == 0, "threads 0 refused");

    CHECK(lmp_job_convert_args("in", "o.gguf", true, "bf16", 0, false) == 0, "convert refused: %s", lmp_errmsg());
    CHECK(refused(lmp_job_convert_args(NULL, "o.gguf", false, NULL, 0, false), "need IN"), "no in: %s", lmp_errmsg());
    CHECK(refused(lmp_job_convert_args("in", NULL, false, NULL, 0, false), "-o OUT"), "no out: %s", lmp_errmsg());
    CHECK(refused(lmp_job_convert_args("in", "x.bin", false, NULL, 0, false), "looks like a file"), "x.bin: %s",
          lmp_errmsg());
    CHECK(lmp_job_convert_args("in", "x.safetensors", false, NULL, 0, false) == 0, "x.safetensors refused: %s",
          lmp_errmsg());
    CHECK(refused(lmp_job_convert_args("in", "dir", true, NULL, 0, false), "--split-max-size"), "split to a folder: %s",
          lmp_errmsg());
    CHECK(refused(lmp_job_convert_args("in", "dir", false, "q4_0", 0, false), "--dtype"), "dtype q4_0: %s",
          lmp_errmsg());
    CHECK(refused(lmp_job_convert_args("in", "dir", false, NULL, -1, false), "--shard-mb"), "shard -1: %s",
          lmp_errmsg());
    CHECK(refused(lmp_job_convert_args("in", "dir", false, NULL, 0, true), "adapter"), "adapter to a folder: %s",
          lmp_errmsg());

    lmp_convert_params cv;
    lmp_convert_default_params(&cv);
    CHECK(lmp_job_merge_args("b", 1, "o", &cv) == 0, "merge refused: %s", lmp_errmsg());
    CHECK(refused(lmp_job_merge_args("b", 0, "o", &cv), "--lora ADAPTER"), "merge no lora: %s", lmp_errmsg());
    CHECK(refused(lmp_job_merge_args(NULL, 1, "o", &cv), "need BASE"), "merge no base: %s", lmp_errmsg());
    CHECK(refused(lmp_job_merge_args("b", 1, NULL, &cv), "-o OUT"), "merge no out: %s", lmp_errmsg());
    cv.dtype = LMP_DT_Q8_0;
    CHECK(refused(lmp_job_merge_args("b", 1, "o", &cv), "--dtype"), "merge dtype (lmp_convert_check): %s",
          lmp_errmsg());

    lmp_synth_params sp;
    lmp_synth_default_params(&sp);
    sp.preset = "tiny";
    CHECK(lmp_job_synth_args(NULL, "d", &sp) == 0, "synth refused: %s", lmp_errmsg());
    CHECK(refused(lmp_job_synth_args("x", "d", &sp), "unexpected argument 'x'"), "synth extra: %s", lmp_errmsg());
    CHECK(refused(lmp_job_synth_args(NULL, NULL, &sp), "-o DIR"), "synth no out: %s", lmp_errmsg());
    sp.preset = NULL;
    CHECK(refused(lmp_job_synth_args(NULL, "d", &sp), "--preset or --config"), "synth no source: %s", lmp_errmsg());
    sp.preset = "nope";
    CHECK(refused(lmp_job_synth_args(NULL, "d", &sp), "unknown preset"), "synth preset (lmp_synth_check): %s",
          lmp_errmsg());

    lmp_tokenize_params tp;
    lmp_tokenize_default_params(&tp);
    tp.text = "hello";
    CHECK(lmp_job_tokenize_args("m", true, false, &tp) == 0, "tokenize refused: %s", lmp_errmsg());
    CHECK(refused(lmp_job_tokenize_args(NULL, false, false, &tp), "MODEL"), "tokenize no model: %s", lmp_errmsg());
    CHECK(refused(lmp_job_tokenize_args("m", true, true, &tp), "--json and --count"), "json+count: %s", lmp_errmsg());
    tp.text = NULL;
    CHECK(refused(lmp_job_tokenize_args("m", false, false, &tp), "--prompt"), "no text (lmp_tokenize_check): %s",
          lmp_errmsg());
}

int main(void)
{
    test_qmodel();
    test_prune();
    test_small();
    test_gguf_job();
    test_dense_input();
    test_ppl();
    test_kld();
    test_synth();
    test_tokenize();
    test_run_job();
    test_tasks_job();
    test_convert();
    test_gguf_args();
    test_qmodel_args();
    test_prune_prefs();
    test_job_checks();
    test_args();
    return test_finish();
}
