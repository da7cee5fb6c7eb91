/*
 * Output-folder helpers shared by formats/' folder writers (qmodel.c, sparse.c) and the
 * jobs: config.json in and out, folder sizes. A leaf: calls nothing else in formats/.
 */
#include "folder.h"

#include <dirent.h>
#include <stdlib.h>
#include <sys/stat.h>

int lmp_fmt_write_json(const char *dir, const char *name, cJSON *j)
{
    char *txt = cJSON_Print(j), *path = lmp_path_join(dir, name);
    int rc;
    if (!txt || !path) {
        rc = lmp_err(LMP_ENOMEM, "out of memory writing %s", name);
    } else {
        rc = lmp_write_text(path, txt);
    }
    free(txt);
    free(path);
    return rc;
}

int lmp_fmt_config_json(const char *srcdir, const lmp_config *cfg, cJSON **out)
{
    *out = NULL;
    char *src = NULL, *path = srcdir ? lmp_path_join(srcdir, "config.json") : NULL;
    cJSON *j = NULL;
    if (path && lmp_read_file(path, &src, NULL) == 0) {
        j = cJSON_Parse(src);
        if (!cJSON_IsObject(j)) {
            cJSON_Delete(j);
            free(src);
            int rc = lmp_err(LMP_EFORMAT, "%s: cannot re-read config.json", path);
            free(path);
            return rc;
        }
    } else {
        char *txt = NULL;
        int rc = lmp_config_to_json(cfg, &txt);
        if (rc) {
            free(path);
            return rc;
        }
        j = cJSON_Parse(txt);
        free(txt);
    }
    free(src);
    free(path);
    if (!j)
        return lmp_err(LMP_ENOMEM, "out of memory");
    *out = j;
    return LMP_OK;
}

uint64_t lmp_fmt_path_bytes(const char *path)
{
    struct stat sb;
    if (stat(path, &sb) != 0)
        return 0;
    if (!S_ISDIR(sb.st_mode))
        return (uint64_t)sb.st_size;
    uint64_t n = 0;
    DIR *d = opendir(path);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char *p = lmp_path_join(path, e->d_name);
        if (p && stat(p, &sb) == 0 && S_ISREG(sb.st_mode))
            n += (uint64_t)sb.st_size;
        free(p);
    }
    if (d)
        closedir(d);
    return n;
}
