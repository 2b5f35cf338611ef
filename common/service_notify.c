/* service_notify.c - see service_notify.h. */
#include "common/service_notify.h"

#include <stdatomic.h>
#include <stdio.h>
#include <systemd/sd-daemon.h>

#include "common/clock.h"

static atomic_int ready_sent;
static _Atomic double last_watchdog;

static void status_line(const char *head, const char *status)
{
    char msg[512];
    snprintf(msg, sizeof msg, "%sSTATUS=%s", head, status ? status : "");
    sd_notify(0, msg);
}

void sd_service_ready(const char *status)
{
    status_line(atomic_exchange(&ready_sent, 1) ? "" : "READY=1\n", status);
}

void sd_service_status(const char *status)
{
    status_line("", status);
}

/* the unit's watchdog interval, read once (0: none) */
static uint64_t watchdog_usec(void)
{
    static atomic_int read;
    static _Atomic uint64_t usec;
    if (!atomic_load(&read)) {
        uint64_t u = 0;
        atomic_store(&usec, sd_watchdog_enabled(0, &u) > 0 ? u : 0);
        atomic_store(&read, 1);
    }
    return atomic_load(&usec);
}

void sd_service_watchdog(void)
{
    uint64_t usec = watchdog_usec();
    if (!usec)
        return;
    double now = sd_now_s();
    if (now - atomic_load(&last_watchdog) < (double)usec / 4e6)
        return;
    atomic_store(&last_watchdog, now);
    sd_notify(0, "WATCHDOG=1");
}

void sd_service_stopping(void)
{
    sd_notify(0, "STOPPING=1\nSTATUS=stopping");
}
