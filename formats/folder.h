/*
 * Output-folder helpers (formats/folder.c) for the folder writers and the jobs.
 */
#ifndef LMP_FORMATS_FOLDER_H
#define LMP_FORMATS_FOLDER_H

#include "lib/infer/infer.h"

#include <cjson/cJSON.h>

/* config.json of the input folder srcdir (or one generated from cfg when srcdir is NULL
 * or has none) as an owned cJSON object. */
int lmp_fmt_config_json(const char *srcdir, const lmp_config *cfg, cJSON **out);
/* Writes j as dir/name (pretty-printed). */
int lmp_fmt_write_json(const char *dir, const char *name, cJSON *j);
/* Size of a file, or of the regular files directly in a folder; 0 when missing. */
uint64_t lmp_fmt_path_bytes(const char *path);

#endif
