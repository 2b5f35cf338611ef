/* store_internal.h - what the store's files share (store.c: jobs and
 * items; store_tasks.c: tasks in flight and what retries them). */
#ifndef SDXL_COORDINATOR_STORE_INTERNAL_H
#define SDXL_COORDINATOR_STORE_INTERNAL_H

#include <sqlite3.h>

#include "coordinator/store.h"

struct sd_store {
    sqlite3 *db;
    int lock_fd; /* DIR/coordinator.lock, flock'ed for the store's life */
};

sd_status store_db_fail(sd_store *s, sd_error *err, const char *what);
sd_status store_exec(sd_store *s, const char *sql, sd_error *err);
/* Several writes that stand or fall together (a SAVEPOINT: inside the
 * broker's turn, store_turn_begin, they commit with the turn). */
sd_status store_piece_begin(sd_store *s, sd_error *err);
sd_status store_piece_end(sd_store *s, sd_error *err);
void store_piece_undo(sd_store *s);

#endif
