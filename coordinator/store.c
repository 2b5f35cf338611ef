/* store.c - see store.h. One SQLite connection, WAL journal, synchronous
 * NORMAL: a committed stage result survives a process kill; an fsync per
 * transaction is not needed for that under WAL. */
#include "coordinator/store.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fsutil.h"
#include "common/job_spec.h"
#include "coordinator/store_internal.h"

/* One coordinator per state dir: an exclusive flock on DIR/coordinator.lock
 * (the kernel drops it when the holder dies, so a crash leaves nothing to
 * clean up), with the holder's pid written in it for the message. */
static sd_status lock_state_dir(const char *dir, int *fd_out, sd_error *err)
{
    char *path = sd_path_join(dir, "coordinator.lock");
    if (!path)
        return sd_fail(err, SD_ERR_NOMEM, "out of memory");
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        sd_status st = sd_fail(err, SD_ERR_IO, "--state %s: cannot create %s: %s", dir, path, strerror(errno));
        free(path);
        return st;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        char pid[32] = "";
        ssize_t n = pread(fd, pid, sizeof pid - 1, 0);
        pid[n > 0 ? n : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        sd_status st = e == EWOULDBLOCK
                           ? sd_fail(err, SD_ERR_IO, "--state %s: another coordinator (pid %s) holds %s; one coordinator "
                                                     "per state dir", dir, pid[0] ? pid : "?", path)
                           : sd_fail(err, SD_ERR_IO, "--state %s: cannot lock %s: %s", dir, path, strerror(e));
        close(fd);
        free(path);
        return st;
    }
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)n, 0) != n) {
        sd_status st = sd_fail(err, SD_ERR_IO, "--state %s: cannot write %s: %s", dir, path, strerror(errno));
        close(fd);
        free(path);
        return st;
    }
    free(path);
    *fd_out = fd;
    return SD_OK;
}

sd_status store_db_fail(sd_store *s, sd_error *err, const char *what)
{
    return sd_fail(err, SD_ERR_IO, "state database: %s: %s", what, sqlite3_errmsg(s->db));
}

sd_status store_exec(sd_store *s, const char *sql, sd_error *err)
{
    char *msg = NULL;
    if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        sd_status st = sd_fail(err, SD_ERR_IO, "state database: %s", msg ? msg : "error");
        sqlite3_free(msg);
        return st;
    }
    return SD_OK;
}

sd_status store_piece_begin(sd_store *s, sd_error *err)
{
    return store_exec(s, "SAVEPOINT piece", err);
}

sd_status store_piece_end(sd_store *s, sd_error *err)
{
    return store_exec(s, "RELEASE piece", err);
}

void store_piece_undo(sd_store *s)
{
    store_exec(s, "ROLLBACK TO piece; RELEASE piece", NULL);
}

sd_status store_turn_begin(sd_store *s, sd_error *err)
{
    return store_exec(s, "BEGIN", err);
}

sd_status store_turn_commit(sd_store *s, sd_error *err)
{
    sd_status st = store_exec(s, "COMMIT", err);
    if (st != SD_OK)
        store_exec(s, "ROLLBACK", NULL);
    return st;
}

sd_status store_open(sd_store **out, const char *dir, sd_error *err)
{
    SD_TRY(sd_mkdirs(dir, err));
    struct stat sb;
    if (stat(dir, &sb) != 0)
        return sd_fail(err, SD_ERR_IO, "--state %s: %s", dir, strerror(errno));
    if (!S_ISDIR(sb.st_mode))
        return sd_fail(err, SD_ERR_IO, "--state %s: not a folder", dir);
    if (access(dir, W_OK | X_OK) != 0)
        return sd_fail(err, SD_ERR_IO, "--state %s: not writable: %s", dir, strerror(errno));
    int lock_fd = -1;
    SD_TRY(lock_state_dir(dir, &lock_fd, err));
    char *path = sd_path_join(dir, "coordinator.sqlite");
    sd_store *s = calloc(1, sizeof *s);
    if (!path || !s) {
        free(path);
        free(s);
        close(lock_fd);
        return sd_fail(err, SD_ERR_NOMEM, "out of memory");
    }
    s->lock_fd = lock_fd;
    if (sqlite3_open(path, &s->db) != SQLITE_OK) {
        sd_status st = sd_fail(err, SD_ERR_IO, "--state %s: %s: %s (%s)", dir, path, sqlite3_errmsg(s->db),
                               strerror(sqlite3_system_errno(s->db)));
        sqlite3_close(s->db);
        close(lock_fd);
        free(s);
        free(path);
        return st;
    }
    free(path);
    sqlite3_busy_timeout(s->db, 5000);
    sd_status st = store_exec(s,
                        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                        "CREATE TABLE IF NOT EXISTS jobs(id TEXT PRIMARY KEY, spec TEXT NOT NULL, identity TEXT,"
                        " state TEXT NOT NULL, created REAL NOT NULL, n INTEGER NOT NULL);"
                        "CREATE TABLE IF NOT EXISTS items(job TEXT NOT NULL, idx INTEGER NOT NULL, params TEXT NOT NULL,"
                        " state INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, error TEXT, blob BLOB,"
                        " info TEXT, losses INTEGER NOT NULL DEFAULT 0, PRIMARY KEY(job, idx));"
                        "CREATE TABLE IF NOT EXISTS tasks(id INTEGER PRIMARY KEY AUTOINCREMENT, job TEXT NOT NULL,"
                        " stage TEXT NOT NULL, worker TEXT NOT NULL, items TEXT NOT NULL);"
                        "CREATE INDEX IF NOT EXISTS items_state ON items(state, job, idx);",
                        err);
    /* a state dir from before the losses column: add it */
    if (st == SD_OK && sqlite3_exec(s->db, "SELECT losses FROM items LIMIT 0", NULL, NULL, NULL) != SQLITE_OK)
        st = store_exec(s, "ALTER TABLE items ADD COLUMN losses INTEGER NOT NULL DEFAULT 0", err);
    /* jobs arrive in pieces: how many items are stored, and whether the
     * submission was closed (a state dir from before: every job whole) */
    if (st == SD_OK && sqlite3_exec(s->db, "SELECT received FROM jobs LIMIT 0", NULL, NULL, NULL) != SQLITE_OK)
        st = store_exec(s,
                        "ALTER TABLE jobs ADD COLUMN received INTEGER NOT NULL DEFAULT 0;"
                        "ALTER TABLE jobs ADD COLUMN submitted INTEGER NOT NULL DEFAULT 0;"
                        "UPDATE jobs SET received=n, submitted=1;",
                        err);
    /* Items per job and state, kept by triggers in the same transaction as
     * every change, so a status of a 10^7-item job reads six rows instead of
     * counting; filled from the items for a state dir from before them. */
    int had_counts = st == SD_OK && sqlite3_exec(s->db, "SELECT n FROM job_counts LIMIT 0", NULL, NULL, NULL) == SQLITE_OK;
    if (st == SD_OK)
        st = store_exec(s,
                        "CREATE TABLE IF NOT EXISTS job_counts(job TEXT NOT NULL, state INTEGER NOT NULL,"
                        " n INTEGER NOT NULL, PRIMARY KEY(job, state)) WITHOUT ROWID;"
                        "CREATE TRIGGER IF NOT EXISTS items_count_insert AFTER INSERT ON items BEGIN"
                        " UPDATE job_counts SET n=n+1 WHERE job=new.job AND state=new.state; END;"
                        "CREATE TRIGGER IF NOT EXISTS items_count_update AFTER UPDATE OF state ON items"
                        " WHEN old.state != new.state BEGIN"
                        " UPDATE job_counts SET n=n-1 WHERE job=old.job AND state=old.state;"
                        " UPDATE job_counts SET n=n+1 WHERE job=new.job AND state=new.state; END;",
                        err);
    if (st == SD_OK && !had_counts)
        st = store_exec(s,
                        "INSERT INTO job_counts SELECT jobs.id, s.value, (SELECT count(*) FROM items"
                        " WHERE items.job=jobs.id AND items.state=s.value) FROM jobs, json_each('[0,1,2,3,4,5]') s;",
                        err);
    if (st != SD_OK) {
        store_close(s);
        return st;
    }
    *out = s;
    return SD_OK;
}

long long store_row_writes(sd_store *s)
{
    return (long long)sqlite3_total_changes64(s->db);
}

int store_prepare(sd_store *s, const char *sql, sqlite3_stmt **q)
{
    int free_slot = s->nstmts < STORE_STMTS;
    for (int i = 0; i < s->nstmts; i++)
        if (!strcmp(s->stmts[i].sql, sql)) {
            if (!sqlite3_stmt_busy(s->stmts[i].q)) {
                *q = s->stmts[i].q;
                return SQLITE_OK;
            }
            free_slot = 0; /* in use: a one-off copy */
        }
    int rc = sqlite3_prepare_v3(s->db, sql, -1, free_slot ? SQLITE_PREPARE_PERSISTENT : 0, q, NULL);
    char *copy = rc == SQLITE_OK && free_slot ? strdup(sql) : NULL;
    if (copy) {
        s->stmts[s->nstmts].sql = copy;
        s->stmts[s->nstmts++].q = *q;
    }
    return rc;
}

void store_done(sd_store *s, sqlite3_stmt *q)
{
    for (int i = 0; i < s->nstmts; i++)
        if (s->stmts[i].q == q) {
            sqlite3_reset(q);
            sqlite3_clear_bindings(q);
            return;
        }
    sqlite3_finalize(q);
}

void store_close(sd_store *s)
{
    if (!s)
        return;
    for (int i = 0; i < s->nstmts; i++) {
        sqlite3_finalize(s->stmts[i].q);
        free(s->stmts[i].sql);
    }
    sqlite3_close(s->db);
    if (s->lock_fd >= 0)
        close(s->lock_fd);
    free(s);
}

/* the job's total, received count, state name and whether its submission
 * was closed; 0 if there is no such job */
typedef struct {
    long long total, received;
    char state[16];
    int submitted;
} job_row_t;

static int job_row(sd_store *s, const char *job_id, job_row_t *r)
{
    sqlite3_stmt *q;
    int found = 0;
    store_prepare(s, "SELECT n, received, state, submitted FROM jobs WHERE id=?", &q);
    sqlite3_bind_text(q, 1, job_id, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(q) == SQLITE_ROW) {
        found = 1;
        r->total = sqlite3_column_int64(q, 0);
        r->received = sqlite3_column_int64(q, 1);
        snprintf(r->state, sizeof r->state, "%s", (const char *)sqlite3_column_text(q, 2));
        r->submitted = sqlite3_column_int(q, 3);
    }
    store_done(s, q);
    return found;
}

sd_status store_job_begin(sd_store *s, const char *job_id, json_t *spec, int *existed, long long *received,
                          sd_error *err)
{
    job_row_t jr;
    *existed = job_row(s, job_id, &jr);
    *received = *existed ? jr.received : 0;
    if (*existed)
        return SD_OK;
    sqlite3_stmt *q;
    SD_TRY(store_piece_begin(s, err));
    char *text = json_dumps(spec, JSON_COMPACT | JSON_SORT_KEYS);
    sd_status st = SD_OK;
    store_prepare(s, "INSERT INTO jobs(id, spec, state, created, n, received, submitted) "
                       "VALUES(?, ?, 'running', julianday('now'), ?, 0, 0)", &q);
    sqlite3_bind_text(q, 1, job_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(q, 2, text, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(q, 3, (sqlite3_int64)json_integer_value(json_object_get(spec, "total")));
    if (sqlite3_step(q) != SQLITE_DONE)
        st = store_db_fail(s, err, "insert job");
    store_done(s, q);
    free(text);
    store_prepare(s, "INSERT INTO job_counts(job, state, n) SELECT ?, value, 0 FROM json_each('[0,1,2,3,4,5]')", &q);
    sqlite3_bind_text(q, 1, job_id, -1, SQLITE_TRANSIENT);
    if (st == SD_OK && sqlite3_step(q) != SQLITE_DONE)
        st = store_db_fail(s, err, "insert job counts");
    store_done(s, q);
    if (st == SD_OK)
        return store_piece_end(s, err); /* a failed commit is the job not created */
    store_piece_undo(s);
    return st;
}

sd_status store_job_add_items(sd_store *s, const char *job_id, long long first, json_t *items,
                              int (*exists)(void *, int), void *user, long long *received, sd_error *err)
{
    job_row_t jr;
    if (!job_row(s, job_id, &jr))
        return sd_fail(err, SD_ERR_MISSING, "no job %s", job_id);
    long long total = jr.total, have = jr.received;
    long long n = (long long)json_array_size(items);
    *received = have;
    if (first > have)
        return sd_fail(err, SD_ERR_INVALID, "job %s: items from %lld sent, but only %lld are stored (items arrive in "
                                            "order)", job_id, first, have);
    if (first + n > total)
        return sd_fail(err, SD_ERR_INVALID, "job %s: items %lld to %lld sent, but the job has %lld", job_id, first,
                       first + n - 1, total);
    if (first + n <= have) /* a piece sent again (a resumed submission): stored already */
        return SD_OK;
    /* items arriving for a cancelled job arrive cancelled, as its others are */
    int cancelled = !strcmp(jr.state, "cancelled");
    SD_TRY(store_piece_begin(s, err));
    sqlite3_stmt *q;
    store_prepare(s, "INSERT INTO items(job, idx, params, state) VALUES(?, ?, ?, ?)", &q);
    sd_status st = SD_OK;
    for (long long i = have - first; i < n && st == SD_OK; i++) {
        int idx = (int)(first + i);
        char *p = json_dumps(json_array_get(items, (size_t)i), JSON_COMPACT | JSON_SORT_KEYS);
        /* an item whose output is already in the folder (a job made again
         * into the same folder) is done */
        int state_new = exists && exists(user, idx) ? STORE_ITEM_STATE_DONE
                        : cancelled                  ? STORE_ITEM_STATE_CANCELLED
                                                     : STORE_ITEM_STATE_PENDING;
        sqlite3_reset(q);
        sqlite3_bind_text(q, 1, job_id, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int(q, 2, idx);
        sqlite3_bind_text(q, 3, p ? p : "{}", -1, SQLITE_TRANSIENT);
        sqlite3_bind_int(q, 4, state_new);
        if (!p)
            st = sd_fail(err, SD_ERR_NOMEM, "out of memory");
        else if (sqlite3_step(q) != SQLITE_DONE)
            st = store_db_fail(s, err, "insert item");
        free(p);
    }
    store_done(s, q);
    if (st == SD_OK) {
        store_prepare(s, "UPDATE jobs SET received=? WHERE id=?", &q);
        sqlite3_bind_int64(q, 1, first + n);
        sqlite3_bind_text(q, 2, job_id, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(q) != SQLITE_DONE)
            st = store_db_fail(s, err, "count received items");
        store_done(s, q);
    }
    if (st == SD_OK && (st = store_piece_end(s, err)) == SD_OK) {
        *received = first + n;
        return SD_OK;
    }
    store_piece_undo(s);
    return st;
}

sd_status store_job_end_submit(sd_store *s, const char *job_id, int *again, sd_error *err)
{
    job_row_t jr;
    if (!job_row(s, job_id, &jr))
        return sd_fail(err, SD_ERR_MISSING, "no job %s", job_id);
    if (jr.received < jr.total)
        return sd_fail(err, SD_ERR_INVALID, "job %s: only %lld of its %lld items were received", job_id, jr.received,
                       jr.total);
    *again = jr.submitted;
    if (*again)
        return SD_OK;
    sqlite3_stmt *q;
    store_prepare(s, "UPDATE jobs SET submitted=1 WHERE id=?", &q);
    sqlite3_bind_text(q, 1, job_id, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(q);
    store_done(s, q);
    return rc == SQLITE_DONE ? SD_OK : store_db_fail(s, err, "close the submission");
}

json_t *store_job_spec(sd_store *s, const char *job_id)
{
    sqlite3_stmt *q;
    json_t *r = NULL;
    store_prepare(s, "SELECT spec FROM jobs WHERE id=?", &q);
    sqlite3_bind_text(q, 1, job_id, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(q) == SQLITE_ROW)
        r = json_loads((const char *)sqlite3_column_text(q, 0), 0, NULL);
    store_done(s, q);
    return r;
}

json_t *store_job_status(sd_store *s, const char *job_id)
{
    sqlite3_stmt *q;
    store_prepare(s, "SELECT state, n, identity, received FROM jobs WHERE id=?", &q);
    sqlite3_bind_text(q, 1, job_id, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(q) != SQLITE_ROW) {
        store_done(s, q);
        return NULL;
    }
    json_t *r = json_pack("{s:s, s:s, s:I, s:I}", "id", job_id, "state", (const char *)sqlite3_column_text(q, 0),
                          "total", (json_int_t)sqlite3_column_int64(q, 1), "received",
                          (json_int_t)sqlite3_column_int64(q, 3));
    if (sqlite3_column_text(q, 2))
        json_object_set_new(r, "model", json_string((const char *)sqlite3_column_text(q, 2)));
    store_done(s, q);
    const char *names[6] = {"pending", "encoded", "denoised", "done", "failed", "cancelled"};
    for (int i = 0; i < 6; i++)
        json_object_set_new(r, names[i], json_integer(0));
    /* the counts the triggers keep: six rows, whatever the job's size */
    store_prepare(s, "SELECT state, n FROM job_counts WHERE job=?", &q);
    sqlite3_bind_text(q, 1, job_id, -1, SQLITE_TRANSIENT);
    while (sqlite3_step(q) == SQLITE_ROW) {
        int stt = sqlite3_column_int(q, 0);
        if (stt >= 0 && stt < 6)
            json_object_set_new(r, names[stt], json_integer(sqlite3_column_int64(q, 1)));
    }
    store_done(s, q);
    json_t *errs = json_array();
    store_prepare(s, "SELECT idx, error FROM items WHERE state=4 AND job=? ORDER BY idx LIMIT 20", &q);
    sqlite3_bind_text(q, 1, job_id, -1, SQLITE_TRANSIENT);
    while (sqlite3_step(q) == SQLITE_ROW)
        json_array_append_new(errs, json_pack("{s:i, s:s}", "item", sqlite3_column_int(q, 0), "error",
                                              sqlite3_column_text(q, 1) ? (const char *)sqlite3_column_text(q, 1) : ""));
    store_done(s, q);
    json_object_set_new(r, "failures", errs);
    return r;
}

long long store_job_count(sd_store *s, const char *job_id, store_item_state state)
{
    sqlite3_stmt *q;
    long long n = 0;
    store_prepare(s, "SELECT n FROM job_counts WHERE job=? AND state=?", &q);
    sqlite3_bind_text(q, 1, job_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(q, 2, (int)state);
    if (sqlite3_step(q) == SQLITE_ROW)
        n = sqlite3_column_int64(q, 0);
    store_done(s, q);
    return n;
}

json_t *store_jobs_list(sd_store *s)
{
    json_t *a = json_array();
    sqlite3_stmt *q;
    store_prepare(s, "SELECT id FROM jobs ORDER BY created", &q);
    while (sqlite3_step(q) == SQLITE_ROW) {
        json_t *st = store_job_status(s, (const char *)sqlite3_column_text(q, 0));
        if (st)
            json_array_append_new(a, st);
    }
    store_done(s, q);
    return a;
}

/* UPDATE jobs SET <column>=value for one job; column is one of ours, never input */
static sd_status set_job_column(sd_store *s, const char *sql, const char *job_id, const char *value, const char *what,
                                sd_error *err)
{
    sqlite3_stmt *q;
    store_prepare(s, sql, &q);
    sqlite3_bind_text(q, 1, value, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(q, 2, job_id, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(q);
    store_done(s, q);
    return rc == SQLITE_DONE ? SD_OK : store_db_fail(s, err, what);
}

sd_status store_job_set_identity(sd_store *s, const char *job_id, const char *identity, sd_error *err)
{
    return set_job_column(s, "UPDATE jobs SET identity=? WHERE id=?", job_id, identity, "set identity", err);
}

const char *store_job_identity(sd_store *s, const char *job_id, char *buf, size_t len)
{
    sqlite3_stmt *q;
    const char *r = NULL;
    store_prepare(s, "SELECT identity FROM jobs WHERE id=?", &q);
    sqlite3_bind_text(q, 1, job_id, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(q) == SQLITE_ROW && sqlite3_column_text(q, 0)) {
        snprintf(buf, len, "%s", (const char *)sqlite3_column_text(q, 0));
        r = buf;
    }
    store_done(s, q);
    return r;
}

const char *store_job_state_name(store_job_state st)
{
    return st == STORE_JOB_STATE_RUNNING ? "running" : st == STORE_JOB_STATE_DONE ? "done" : "cancelled";
}

sd_status store_job_set_state(sd_store *s, const char *job_id, store_job_state state, sd_error *err)
{
    return set_job_column(s, "UPDATE jobs SET state=? WHERE id=?", job_id, store_job_state_name(state),
                          "set job state", err);
}

sd_status store_job_cancel(sd_store *s, const char *job_id, sd_error *err)
{
    job_row_t jr;
    if (job_row(s, job_id, &jr) && !strcmp(jr.state, "done")) /* cancelling a finished job changes nothing */
        return SD_OK;
    /* the job stops being dispatched now; its items follow in slices
     * (store_cancel_some), never one statement over 10^7 rows */
    return store_job_set_state(s, job_id, STORE_JOB_STATE_CANCELLED, err);
}

sd_status store_cancel_some(sd_store *s, int max, int *moved, sd_error *err)
{
    *moved = 0;
    char jobs[16][40];
    int nj = 0;
    sqlite3_stmt *q;
    /* cancelled jobs with items still waiting: the kept counts say which */
    store_prepare(s, "SELECT id FROM jobs WHERE state='cancelled' AND EXISTS (SELECT 1 FROM job_counts c "
                       "WHERE c.job=jobs.id AND c.state<3 AND c.n>0) LIMIT 16", &q);
    while (nj < 16 && sqlite3_step(q) == SQLITE_ROW)
        snprintf(jobs[nj++], sizeof jobs[0], "%s", (const char *)sqlite3_column_text(q, 0));
    store_done(s, q);
    store_prepare(s, "UPDATE items SET state=5, blob=NULL WHERE rowid IN (SELECT rowid FROM items INDEXED BY "
                       "items_state WHERE state IN (0, 1, 2) AND job=? LIMIT ?)", &q);
    int rc = SQLITE_DONE;
    for (int j = 0; j < nj && *moved < max && rc == SQLITE_DONE; j++) {
        sqlite3_reset(q);
        sqlite3_bind_text(q, 1, jobs[j], -1, SQLITE_TRANSIENT);
        sqlite3_bind_int(q, 2, max - *moved);
        rc = sqlite3_step(q);
        *moved += sqlite3_changes(s->db);
    }
    store_done(s, q);
    return rc == SQLITE_DONE ? SD_OK : store_db_fail(s, err, "cancel");
}

int store_items_waiting(sd_store *s, store_item_state state, store_item_ref *out, int max, int per_job, int scan,
                        int (*skip)(void *user, const char *job, int idx), int (*room)(void *user, const char *job),
                        void *user)
{
    /* job by job, oldest first: each a seek into the (state, job, idx)
     * index, never a sort of every waiting item of a 10^7-item job */
    char jobs[64][40];
    int nj = store_running_jobs(s, jobs, 64), n = 0;
    sqlite3_stmt *q;
    store_prepare(s, "SELECT idx, params, info FROM items WHERE state=? AND job=? ORDER BY idx LIMIT ?", &q);
    for (int j = 0; j < nj && n < max; j++) {
        int cap = room ? room(user, jobs[j]) : per_job;
        cap = cap < per_job ? cap : per_job;
        if (cap <= 0)
            continue;
        json_t *spec = NULL;
        sqlite3_reset(q);
        sqlite3_bind_int(q, 1, (int)state);
        sqlite3_bind_text(q, 2, jobs[j], -1, SQLITE_TRANSIENT);
        sqlite3_bind_int(q, 3, scan > per_job ? scan : per_job);
        int taken = 0;
        while (n < max && taken < cap && sqlite3_step(q) == SQLITE_ROW) {
            if (skip && skip(user, jobs[j], sqlite3_column_int(q, 0)))
                continue;
            if (!spec)
                spec = store_job_spec(s, jobs[j]);
            json_t *own = json_loads((const char *)sqlite3_column_text(q, 1), 0, NULL);
            snprintf(out[n].job, sizeof out[n].job, "%s", jobs[j]);
            out[n].idx = sqlite3_column_int(q, 0);
            out[n].params = sd_job_item_params(json_object_get(spec, "defaults"), own);
            json_decref(own);
            const char *info = (const char *)sqlite3_column_text(q, 2);
            out[n].info = info ? json_loads(info, 0, NULL) : NULL;
            if (!json_is_object(out[n].info)) {
                json_decref(out[n].info);
                out[n].info = json_object();
            }
            taken++;
            n++;
        }
        json_decref(spec);
    }
    store_done(s, q);
    return n;
}

void store_item_refs_free(store_item_ref *r, int n)
{
    for (int i = 0; i < n; i++) {
        json_decref(r[i].params);
        json_decref(r[i].info);
    }
}

sd_status store_item_advance(sd_store *s, const char *job, int idx, store_item_state from, store_item_state to, const void *blob,
                             size_t len, json_t *info, sd_error *err)
{
    sqlite3_stmt *q;
    char *text = info ? json_dumps(info, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    store_prepare(s, "UPDATE items SET state=?, blob=?, info=coalesce(?, info) WHERE job=? AND idx=? AND state=?", &q);
    sqlite3_bind_int(q, 1, (int)to);
    if (blob)
        sqlite3_bind_blob(q, 2, blob, (int)len, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(q, 2);
    if (text)
        sqlite3_bind_text(q, 3, text, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(q, 3);
    sqlite3_bind_text(q, 4, job, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(q, 5, idx);
    sqlite3_bind_int(q, 6, (int)from);
    int rc = sqlite3_step(q);
    int changed = sqlite3_changes(s->db);
    store_done(s, q);
    free(text);
    if (rc != SQLITE_DONE)
        return store_db_fail(s, err, "advance item");
    if (changed != 1)
        return sd_fail(err, SD_ERR_INVALID, "item %s/%d is no longer in that stage", job, idx);
    return SD_OK;
}

sd_status store_item_blob(sd_store *s, const char *job, int idx, void **blob, size_t *len, sd_error *err)
{
    sqlite3_stmt *q;
    store_prepare(s, "SELECT blob FROM items WHERE job=? AND idx=?", &q);
    sqlite3_bind_text(q, 1, job, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(q, 2, idx);
    sd_status st = SD_OK;
    if (sqlite3_step(q) == SQLITE_ROW && sqlite3_column_blob(q, 0)) {
        *len = (size_t)sqlite3_column_bytes(q, 0);
        *blob = malloc(*len);
        if (*blob)
            memcpy(*blob, sqlite3_column_blob(q, 0), *len);
        else
            st = sd_fail(err, SD_ERR_NOMEM, "out of memory");
    } else {
        st = sd_fail(err, SD_ERR_MISSING, "item %s/%d has no stored intermediate", job, idx);
    }
    store_done(s, q);
    return st;
}

sd_status store_item_failed_attempt(sd_store *s, const char *job, int idx, const char *reason, int max_attempts,
                                    sd_error *err)
{
    sqlite3_stmt *q;
    store_prepare(s, "UPDATE items SET attempts=attempts+1, error=?, state=CASE WHEN attempts+1>=? THEN 4 ELSE state END "
                       "WHERE job=? AND idx=? AND state<3", &q);
    sqlite3_bind_text(q, 1, reason, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(q, 2, max_attempts);
    sqlite3_bind_text(q, 3, job, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(q, 4, idx);
    int rc = sqlite3_step(q);
    store_done(s, q);
    return rc == SQLITE_DONE ? SD_OK : store_db_fail(s, err, "record failure");
}

json_t *store_job_done_page(sd_store *s, const char *job, int after, int limit)
{
    json_t *a = json_array();
    sqlite3_stmt *q;
    store_prepare(s, "SELECT idx, info FROM items WHERE state=3 AND job=? AND idx>? ORDER BY idx LIMIT ?", &q);
    sqlite3_bind_text(q, 1, job, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(q, 2, after);
    sqlite3_bind_int(q, 3, limit);
    while (sqlite3_step(q) == SQLITE_ROW) {
        json_t *info = sqlite3_column_text(q, 1) ? json_loads((const char *)sqlite3_column_text(q, 1), 0, NULL) : NULL;
        json_array_append_new(a, json_pack("{s:i, s:o}", "idx", sqlite3_column_int(q, 0), "info",
                                           info ? info : json_object()));
    }
    store_done(s, q);
    return a;
}

int store_job_unfinished(sd_store *s, const char *job)
{
    /* items still to arrive, and those waiting for a stage: the counts */
    sqlite3_stmt *q;
    long long n = 0;
    store_prepare(s, "SELECT (SELECT n - received FROM jobs WHERE id=?1) + "
                       "(SELECT coalesce(sum(n), 0) FROM job_counts WHERE job=?1 AND state<3)", &q);
    sqlite3_bind_text(q, 1, job, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(q) == SQLITE_ROW)
        n = sqlite3_column_int64(q, 0);
    store_done(s, q);
    return n > INT_MAX ? INT_MAX : (int)n;
}

int store_items_unfinished(sd_store *s, const char *job, int first, int last)
{
    sqlite3_stmt *q;
    long long n = 0;
    /* a range scan of the (job, idx) primary key, plus the range's items
     * that have not arrived yet */
    store_prepare(s, "SELECT (SELECT count(*) FROM items WHERE job=?1 AND idx>=?2 AND idx<?3 AND state<3) + "
                       "(SELECT max(0, min(n, ?3) - max(received, ?2)) FROM jobs WHERE id=?1)", &q);
    sqlite3_bind_text(q, 1, job, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(q, 2, first);
    sqlite3_bind_int(q, 3, last);
    if (sqlite3_step(q) == SQLITE_ROW)
        n = sqlite3_column_int64(q, 0);
    store_done(s, q);
    return n > INT_MAX ? INT_MAX : (int)n;
}

sd_status store_item_mark_done(sd_store *s, const char *job, int idx, sd_error *err)
{
    sqlite3_stmt *q;
    store_prepare(s, "UPDATE items SET state=3, blob=NULL WHERE job=? AND idx=?", &q);
    sqlite3_bind_text(q, 1, job, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(q, 2, idx);
    int rc = sqlite3_step(q);
    store_done(s, q);
    return rc == SQLITE_DONE ? SD_OK : store_db_fail(s, err, "mark done");
}

int store_item_state_of(sd_store *s, const char *job, int idx)
{
    sqlite3_stmt *q;
    int r = -1;
    store_prepare(s, "SELECT state FROM items WHERE job=? AND idx=?", &q);
    sqlite3_bind_text(q, 1, job, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(q, 2, idx);
    if (sqlite3_step(q) == SQLITE_ROW)
        r = sqlite3_column_int(q, 0);
    store_done(s, q);
    return r;
}

int store_running_jobs(sd_store *s, char (*out)[40], int max)
{
    sqlite3_stmt *q;
    int n = 0;
    store_prepare(s, "SELECT id FROM jobs WHERE state='running' ORDER BY created", &q);
    while (n < max && sqlite3_step(q) == SQLITE_ROW)
        snprintf(out[n++], 40, "%s", (const char *)sqlite3_column_text(q, 0));
    store_done(s, q);
    return n;
}

json_t *store_item_info(sd_store *s, const char *job, int idx)
{
    sqlite3_stmt *q;
    json_t *r = NULL;
    store_prepare(s, "SELECT info FROM items WHERE job=? AND idx=?", &q);
    sqlite3_bind_text(q, 1, job, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(q, 2, idx);
    if (sqlite3_step(q) == SQLITE_ROW && sqlite3_column_text(q, 0))
        r = json_loads((const char *)sqlite3_column_text(q, 0), 0, NULL);
    store_done(s, q);
    return r;
}

void store_state_totals(sd_store *s, long long items[6], long long *jobs_running, long long *jobs_ended)
{
    sqlite3_stmt *q;
    for (int i = 0; i < 6; i++)
        items[i] = 0;
    *jobs_running = *jobs_ended = 0;
    store_prepare(s, "SELECT state, sum(n) FROM job_counts GROUP BY state", &q);
    while (sqlite3_step(q) == SQLITE_ROW) {
        int st = sqlite3_column_int(q, 0);
        if (st >= 0 && st < 6)
            items[st] = sqlite3_column_int64(q, 1);
    }
    store_done(s, q);
    store_prepare(s, "SELECT state='running', count(*) FROM jobs GROUP BY state='running'", &q);
    while (sqlite3_step(q) == SQLITE_ROW)
        *(sqlite3_column_int(q, 0) ? jobs_running : jobs_ended) += sqlite3_column_int64(q, 1);
    store_done(s, q);
}
