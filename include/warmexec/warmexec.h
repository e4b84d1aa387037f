/*
 * warmexec: run simulation studies in warm, isolated worker processes.
 *
 * Umbrella header of the public API.  Every public symbol starts with
 * wx_ or WX_.  Error handling (error.h), ownership words ("owned",
 * "borrowed", "caller frees with ...") and thread-safety are stated in
 * each header.
 */
#ifndef WARMEXEC_WARMEXEC_H
#define WARMEXEC_WARMEXEC_H

#include <warmexec/alloc.h>
#include <warmexec/buf.h>
#include <warmexec/bundle.h>
#include <warmexec/cache.h>
#include <warmexec/canon.h>
#include <warmexec/cas.h>
#include <warmexec/config.h>
#include <warmexec/entrypoint.h>
#include <warmexec/env.h>
#include <warmexec/error.h>
#include <warmexec/ids.h>
#include <warmexec/json.h>
#include <warmexec/log.h>
#include <warmexec/pool.h>
#include <warmexec/result.h>
#include <warmexec/service.h>
#include <warmexec/study.h>
#include <warmexec/task.h>
#include <warmexec/version.h>

#endif
