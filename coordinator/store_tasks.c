/* store_tasks.c - tasks in flight and the two ways back for an item: a
 * failure of its own (store.c: store_item_failed_attempt) or lost work
 * (store_item_lost, here); retrying a job's failed and cancelled items. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/store_internal.h"

/* a loss (no attempt charged); restart: the item goes back to the start
 * (its input is gone) instead of waiting where it was */
static sd_status item_lost(sd_store *s, const char *job, int idx, const char *reason, int max_losses, int restart,
                           sd_error *err)
{
    sqlite3_stmt *q;
    char why[400];
    snprintf(why, sizeof why, "lost %d times (its workers died, stalled or registered again while computing it); "
                              "last: %s", max_losses, reason);
    store_prepare(s, "UPDATE items SET losses=losses+1, state=CASE WHEN losses+1>=? THEN 4 WHEN ? THEN 0 ELSE state "
                       "END, error=CASE WHEN losses+1>=? THEN ? ELSE error END WHERE job=? AND idx=? AND state<3", &q);
    sqlite3_bind_int(q, 1, max_losses);
    sqlite3_bind_int(q, 2, restart);
    sqlite3_bind_int(q, 3, max_losses);
    sqlite3_bind_text(q, 4, why, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(q, 5, job, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(q, 6, idx);
    int rc = sqlite3_step(q);
    store_done(s, q);
    return rc == SQLITE_DONE ? SD_OK : store_db_fail(s, err, "record lost work");
}

sd_status store_item_lost(sd_store *s, const char *job, int idx, const char *reason, int max_losses, sd_error *err)
{
    return item_lost(s, job, idx, reason, max_losses, 0, err);
}

sd_status store_item_lost_input(sd_store *s, const char *job, int idx, const char *reason, int max_losses,
                                sd_error *err)
{
    return item_lost(s, job, idx, reason, max_losses, 1, err);
}

sd_status store_job_retry(sd_store *s, const char *job_id, int *n, sd_error *err)
{
    sqlite3_stmt *q;
    *n = 0;
    SD_TRY(store_piece_begin(s, err));
    store_prepare(s, "UPDATE items SET state=0, attempts=0, losses=0, error=NULL, blob=NULL "
                       "WHERE job=? AND state IN (4, 5)", &q);
    sqlite3_bind_text(q, 1, job_id, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(q);
    *n = sqlite3_changes(s->db);
    store_done(s, q);
    sd_status st = rc == SQLITE_DONE ? SD_OK : store_db_fail(s, err, "retry items");
    if (st == SD_OK) {
        store_prepare(s, "UPDATE jobs SET state='running' WHERE id=? AND EXISTS "
                           "(SELECT 1 FROM items WHERE job=? AND state<3)", &q);
        sqlite3_bind_text(q, 1, job_id, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(q, 2, job_id, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(q) != SQLITE_DONE)
            st = store_db_fail(s, err, "set job running");
        store_done(s, q);
    }
    if (st == SD_OK)
        return store_piece_end(s, err);
    store_piece_undo(s);
    return st;
}

sd_status store_item_reset(sd_store *s, const char *job, int idx, sd_error *err)
{
    sqlite3_stmt *q;
    store_prepare(s, "UPDATE items SET state=0, attempts=0, losses=0, error=NULL, blob=NULL "
                              "WHERE job=? AND idx=?", &q);
    sqlite3_bind_text(q, 1, job, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(q, 2, idx);
    int rc = sqlite3_step(q);
    store_done(s, q);
    return rc == SQLITE_DONE ? SD_OK : store_db_fail(s, err, "reset item");
}

sd_status store_task_add(sd_store *s, const char *job, const char *stage, const char *worker, const int *idx, int n,
                         long long *id, sd_error *err)
{
    char items[16 * 12 + 4];
    size_t l = 0;
    items[l++] = '[';
    for (int k = 0; k < n && k < 16; k++)
        l += (size_t)snprintf(items + l, sizeof items - l, "%s%d", k ? "," : "", idx[k]);
    snprintf(items + l, sizeof items - l, "]");
    sqlite3_stmt *q;
    store_prepare(s, "INSERT INTO tasks(job, stage, worker, items) VALUES(?, ?, ?, ?)", &q);
    sqlite3_bind_text(q, 1, job, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(q, 2, stage, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(q, 3, worker, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(q, 4, items, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(q);
    store_done(s, q);
    if (rc != SQLITE_DONE)
        return store_db_fail(s, err, "record task");
    *id = (long long)sqlite3_last_insert_rowid(s->db);
    return SD_OK;
}

sd_status store_task_remove(sd_store *s, long long id, sd_error *err)
{
    sqlite3_stmt *q;
    store_prepare(s, "DELETE FROM tasks WHERE id=?", &q);
    sqlite3_bind_int64(q, 1, (sqlite3_int64)id);
    int rc = sqlite3_step(q);
    store_done(s, q);
    return rc == SQLITE_DONE ? SD_OK : store_db_fail(s, err, "remove task");
}

int store_tasks_list(sd_store *s, store_task *out, int max)
{
    sqlite3_stmt *q;
    int n = 0;
    store_prepare(s, "SELECT id, job, stage, worker, items FROM tasks ORDER BY id", &q);
    while (n < max && sqlite3_step(q) == SQLITE_ROW) {
        store_task *t = &out[n];
        memset(t, 0, sizeof *t);
        t->id = (long long)sqlite3_column_int64(q, 0);
        snprintf(t->job, sizeof t->job, "%s", (const char *)sqlite3_column_text(q, 1));
        snprintf(t->stage, sizeof t->stage, "%s", (const char *)sqlite3_column_text(q, 2));
        snprintf(t->worker, sizeof t->worker, "%s", (const char *)sqlite3_column_text(q, 3));
        json_t *a = json_loads((const char *)sqlite3_column_text(q, 4), 0, NULL);
        for (size_t k = 0; k < json_array_size(a) && k < 16; k++)
            t->idx[t->n++] = (int)json_integer_value(json_array_get(a, k));
        json_decref(a);
        n++;
    }
    store_done(s, q);
    return n;
}
