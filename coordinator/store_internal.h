/* store_internal.h - what the store's files share (store.c: jobs and
 * items; store_tasks.c: tasks in flight and what retries them). */
#ifndef SDXL_COORDINATOR_STORE_INTERNAL_H
#define SDXL_COORDINATOR_STORE_INTERNAL_H

#include <sqlite3.h>

#include "coordinator/store.h"

/* prepared statements kept for the store's life: preparing one costs more
 * than running it (a fleet runs the same few thousands of times a second) */
#define STORE_STMTS 64
struct sd_store {
    sqlite3 *db;
    int lock_fd; /* DIR/coordinator.lock, flock'ed for the store's life */
    struct {
        char *sql;
        sqlite3_stmt *q;
    } stmts[STORE_STMTS];
    int nstmts;
};

/* A statement for sql: the kept one (reset) unless it is in use (a nested
 * query), else a new one. Returns sqlite3_prepare's code. */
int store_prepare(sd_store *s, const char *sql, sqlite3_stmt **q);
/* Done with q: a kept one is reset for its next use, another finalized. */
void store_done(sd_store *s, sqlite3_stmt *q);

sd_status store_db_fail(sd_store *s, sd_error *err, const char *what);
sd_status store_exec(sd_store *s, const char *sql, sd_error *err);
/* Several writes that stand or fall together (a SAVEPOINT: inside the
 * broker's turn, store_turn_begin, they commit with the turn). */
sd_status store_piece_begin(sd_store *s, sd_error *err);
sd_status store_piece_end(sd_store *s, sd_error *err);
void store_piece_undo(sd_store *s);

#endif
