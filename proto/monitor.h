/* monitor.h - a ZeroMQ socket's connection events (connected, a CURVE
 * handshake refused), read without blocking: how a client or a worker
 * tells "no coordinator" and "key refused" from silence. */
#ifndef SDXL_PROTO_MONITOR_H
#define SDXL_PROTO_MONITOR_H

/* A PAIR socket receiving sock's events of the mask (ZMQ_EVENT_*), or NULL
 * when monitoring is not available (the caller then goes without). */
void *sd_monitor_open(void *ctx, void *sock, int events);
/* 1 and the event (ZMQ_EVENT_*) and its value when one is waiting, else 0. */
int sd_monitor_next(void *mon, unsigned *event, unsigned *value);

#endif
