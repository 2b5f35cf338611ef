/* job_spec.h - what a SUBMIT's job spec must be, checked before anything is
 * stored: a non-empty list of items (each a prompt, an integer seed and
 * generation parameters that pass the parameter table, common/gen_params.h),
 * an absolute output folder, a known format, and an optional model identity.
 * A pure function of the spec (the fuzz target's entry too). */
#ifndef SDXL_COORDINATOR_JOB_SPEC_H
#define SDXL_COORDINATOR_JOB_SPEC_H

#include <jansson.h>

#include "common/error.h"

sd_status sd_job_spec_validate(const json_t *spec, sd_error *err);

#endif
