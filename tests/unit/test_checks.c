/*
 * The library check functions the commands rely on (issue 14: validation only there):
 * defaults pass, each bad value is LMP_EINVAL with a message naming the lmpress option,
 * and the edges of each range are where the check says.
 */
#include "test.h"

#include "formats/formats.h"
#include "jobs/dense_input.h"
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
    CHECK(refused(lmp_job_run_check(&p), "-p PROMPT"), "no prompt: %s", lmp_errmsg());
    p.prompt = "Once";
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
    CHECK(refused(lmp_job_tasks_check(&p), "--task"), "no task: %s", lmp_errmsg());
    const char *ok[] = {"arc=arc.jsonl", "hs=hs.txt"};
    p.specs = ok;
    p.n_tasks = 2;
    CHECK(lmp_job_tasks_check(&p) == 0, "two tasks refused: %s", lmp_errmsg());
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
    return test_finish();
}
