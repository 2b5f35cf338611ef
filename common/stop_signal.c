/* stop_signal.c - see stop_signal.h. */
#include "common/stop_signal.h"

#include <signal.h>

volatile int sd_stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    sd_stop_requested = 1;
}

void sd_stop_on_signals(void)
{
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGPIPE, SIG_IGN);
}
