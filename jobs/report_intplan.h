/*
 * `lmpress quantize --method gptq|rtn|awq --target-bpw X | --target-size S [--dry-run]`:
 * printing the integer-group plan (lib/quant/intplan.h) that jobs/quantize_model.c made.
 */
#ifndef LMP_JOBS_REPORT_INTPLAN_H
#define LMP_JOBS_REPORT_INTPLAN_H

#include "jobs/quantize_model.h"

#include <stdio.h>

/* The plan as a table (units: bits, group, bytes, predicted error; then the totals and
 * the uniform 4-bit / 3-bit group-128 settings for comparison) on `f`. */
void lmp_report_intplan_print(FILE *f, const lmp_qmodel_quant_params *p, const lmp_qmodel_quant_result *r);
/* The plan as one JSON object on stdout (no newline). */
void lmp_report_intplan_json(const lmp_qmodel_quant_params *p, const lmp_qmodel_quant_result *r);

#endif
