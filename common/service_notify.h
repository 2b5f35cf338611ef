/* service_notify.h - systemd's service notification protocol (Type=notify),
 * through libsystemd's sd_notify: READY=1 once the process serves, STATUS=
 * lines, WATCHDOG=1 keep-alives while its loops turn (when the unit sets
 * WatchdogSec), STOPPING=1 at a clean stop. Outside systemd (no
 * NOTIFY_SOCKET) each call does nothing. */
#ifndef SDXL_COMMON_SERVICE_NOTIFY_H
#define SDXL_COMMON_SERVICE_NOTIFY_H

/* READY=1 with a STATUS line (once; later calls only update the status). */
void sd_service_ready(const char *status);
void sd_service_status(const char *status);
/* WATCHDOG=1, at most every quarter of the unit's watchdog interval:
 * call it from every turn of the loops that must keep turning. */
void sd_service_watchdog(void);
void sd_service_stopping(void);

#endif
