/* stop_signal.h - how the daemons (sdxl-coordinator, sdxl-worker) stop:
 * SIGINT and SIGTERM set a flag their loops poll, so they finish cleanly
 * (sockets closed, state committed) and exit 0; SIGPIPE is ignored. */
#ifndef SDXL_COMMON_STOP_SIGNAL_H
#define SDXL_COMMON_STOP_SIGNAL_H

/* Set to 1 by SIGINT or SIGTERM once sd_stop_on_signals has run. */
extern volatile int sd_stop_requested;
void sd_stop_on_signals(void);

#endif
