/* events_socket.h: --events unix:PATH (events_socket.c): the run's events, live, to any number
 * of clients of a Unix socket (0600, removed when the run ends), each from its connection on,
 * as the same msgpack stream an events file gets. A client is never waited for: what it has
 * not read yet is queued, up to EVENTS_CLIENT_QUEUE bytes ($PROVIUM_EVENTS_QUEUE, for tests);
 * past that it is dropped, and an events.client_dropped event says so. */
#pragma once

#include <stddef.h>
#include <uv.h>

#define EVENTS_CLIENT_QUEUE (8u << 20)
#define EVENTS_MAX_CLIENTS  64

typedef struct EventsSocket EventsSocket;

/* Listens on path (a socket left there by a run that died is replaced; one a live run
 * listens on is an error). NULL with err naming the path. */
EventsSocket *events_socket_open(uv_loop_t *loop, const char *path, char *err, size_t errlen);
/* The run is over: no new clients; each client gets what is queued for it, for up to 2 s, then
 * its connection ends. The loop then has nothing of this left to wait for. */
void events_socket_drain(EventsSocket *s);
/* Closes everything at once, unlinks the path; freed once its handles are closed. NULL ok. */
void events_socket_close(EventsSocket *s);
