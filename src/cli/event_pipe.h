/* event_pipe.h: a file runner's events, framed onto the dispatcher's pipe (fd 3). */
#pragma once

#include <uv.h>

/* Subscribes the pipe's sink to the event bus: each event a frame (u32 length + map). */
void event_pipe_open(int fd);
/* From here on `op` events (one per guest call, thousands a second) wait up to
 * EVENT_PIPE_HOLD_MS on loop, or until any other event, to go over in one write. */
int event_pipe_attach(uv_loop_t *loop);
/* Writes what is held and holds nothing more: before the loop's handles close. */
void event_pipe_detach(void);
/* Writes what is held and closes the pipe: events from here on go nowhere (a kept runner's,
 * once the dispatcher has gone on without it). */
void event_pipe_close(void);
