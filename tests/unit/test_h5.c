/*
 * lib/io HDF5 helpers: write/read round trips of every supported dtype (f16 as IEEE
 * half), attributes, extendable datasets, atomic create, truncated files refused, and
 * (when Debian's python3-h5py is there) an independent read of the file by h5py.
 */
#include "lib/io/io.h"
#include "test.h"

#include <math.h>

int main(void)
{
    char path[512], cmd[1200];
    snprintf(path, sizeof path, "%s/a.h5", tmpdir());
    lmp_h5 *f;
    CHECK(lmp_h5_create(&f, path, false) == 0, "create: %s", lmp_errmsg());
    float x[6] = {1.5f, -2.25f, 3.0f, 65504.0f, 1e-3f, 0};
    uint16_t h[6];
    lmp_f32_to_f16_row(x, h, 6);
    int32_t ids[6] = {1, 2, 3, -4, 5, 2147483647};
    int64_t shape[2] = {2, 3};
    CHECK(lmp_h5_write(f, "x", LMP_DT_F32, 2, shape, x, 1, 4) == 0, "write f32: %s", lmp_errmsg());
    CHECK(lmp_h5_write(f, "h", LMP_DT_F16, 2, shape, h, 2, 4) == 0, "write f16: %s", lmp_errmsg());
    CHECK(lmp_h5_write(f, "ids", LMP_DT_I32, 2, shape, ids, 0, 0) == 0, "write i32");
    CHECK(lmp_h5_attr_set_str(f, "/", "model", "stories260K") == 0, "attr str");
    CHECK(lmp_h5_attr_set_i64(f, "/", "seed", 1234) == 0, "attr i64");
    CHECK(lmp_h5_attr_set_f64(f, "x", "scale", 0.5) == 0, "attr f64 on dataset");
    int64_t row[1] = {3};
    CHECK(lmp_h5_ext_create(f, "ext", LMP_DT_F32, 2, row, 4, 1) == 0, "ext create: %s", lmp_errmsg());
    CHECK(lmp_h5_ext_append(f, "ext", x, 2) == 0 && lmp_h5_ext_append(f, "ext", x, 1) == 0, "ext append: %s",
          lmp_errmsg());
    CHECK(!lmp_path_exists(path), "not visible before commit");
    CHECK(lmp_h5_close(f, true) == 0 && lmp_path_exists(path), "commit");

    CHECK(lmp_h5_open(&f, path, false) == 0, "open: %s", lmp_errmsg());
    int nd;
    int64_t sh[8];
    void *d;
    CHECK(lmp_h5_read(f, "x", LMP_DT_F32, &nd, sh, &d) == 0 && nd == 2 && sh[0] == 2 && sh[1] == 3 &&
              memcmp(d, x, sizeof x) == 0,
          "f32 round trip");
    free(d);
    CHECK(lmp_h5_read(f, "h", LMP_DT_F32, &nd, sh, &d) == 0, "f16 read as f32: %s", lmp_errmsg());
    int ok = 1;
    for (int i = 0; i < 6; i++)
        ok &= ((float *)d)[i] == lmp_f16_to_f32(h[i]);
    CHECK(ok, "f16 values converted exactly");
    free(d);
    CHECK(lmp_h5_read(f, "ids", LMP_DT_I32, &nd, sh, &d) == 0 && memcmp(d, ids, sizeof ids) == 0, "i32");
    free(d);
    int64_t rows;
    CHECK(lmp_h5_ext_rows(f, "ext", &rows) == 0 && rows == 3, "ext rows %lld", (long long)rows);
    char *s;
    CHECK(lmp_h5_attr_get_str(f, "/", "model", &s) == 0 && strcmp(s, "stories260K") == 0, "attr str back");
    free(s);
    int64_t seed;
    double sc;
    CHECK(lmp_h5_attr_get_i64(f, "/", "seed", &seed) == 0 && seed == 1234, "attr i64 back");
    CHECK(lmp_h5_attr_get_f64(f, "x", "scale", &sc) == 0 && sc == 0.5, "attr f64 back");
    CHECK(lmp_h5_read(f, "nope", LMP_DT_F32, &nd, sh, &d) == LMP_ENOTFOUND, "missing dataset");
    lmp_h5_close(f, false);

    CHECK(lmp_h5_create(&f, path, false) == LMP_EEXIST, "existing refused");

    /* Independent reader: h5py (Debian python3-h5py), when present. */
    if (system("/usr/bin/python3 -c 'import h5py' 2>/dev/null") == 0) {
        snprintf(cmd, sizeof cmd,
                 "/usr/bin/python3 -c \"import h5py,numpy as n;f=h5py.File('%s','r');"
                 "assert f['h'].dtype==n.float16, f['h'].dtype;"
                 "assert abs(float(f['h'][1,0])-65504.0)<1e-9;"
                 "assert f['ids'][1,2]==2147483647;assert f.attrs['seed']==1234;"
                 "assert f.attrs['model'] in ('stories260K',b'stories260K');"
                 "assert f['ext'].shape==(3,3);assert f['x'].compression=='gzip'\"",
                 path);
        CHECK(system(cmd) == 0, "h5py reads the file: %s", cmd);
    } else {
        SKIP("python3-h5py not installed: independent read");
    }

    /* A file written by h5py (variable-length UTF-8 string attribute, its default). */
    char py[600];
    snprintf(py, sizeof py, "%s/py.h5", tmpdir());
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c \"import h5py,numpy as n;f=h5py.File('%s','w');f.attrs['teacher']='caf\\u00e9';"
             "f['x']=n.arange(6,dtype=n.float32).reshape(2,3);f.close()\" 2>/dev/null",
             py);
    if (system(cmd) == 0) {
        CHECK(lmp_h5_open(&f, py, false) == 0, "open h5py file");
        CHECK(lmp_h5_attr_get_str(f, "/", "teacher", &s) == 0 && strcmp(s, "caf\xc3\xa9") == 0,
              "h5py variable-length UTF-8 attribute: %s", lmp_errmsg());
        free(s);
        lmp_h5_close(f, false);
    } else {
        SKIP("python3-h5py not installed: h5py-written file");
    }

    /* Truncated file: refused with a message naming it. */
    char trunc[600];
    snprintf(trunc, sizeof trunc, "%s/trunc.h5", tmpdir());
    snprintf(cmd, sizeof cmd, "head -c 700 '%s' > '%s'", path, trunc);
    CHECK(system(cmd) == 0, "make truncated copy");
    int rc = lmp_h5_open(&f, trunc, false);
    if (rc == 0) {
        rc = lmp_h5_read(f, "x", LMP_DT_F32, &nd, sh, &d);
        if (rc == 0)
            free(d);
        lmp_h5_close(f, false);
    }
    CHECK(rc != 0 && strstr(lmp_errmsg(), "trunc.h5"), "truncated HDF5 refused: %s", lmp_errmsg());
    return test_finish();
}
