/* coverage_read.c: feeding event streams into a tally, through events_read.c. */
#include "coverage_read.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "events_read.h"

int coverage_read(Coverage *c, const char *path, char *err, size_t errlen)
{
        EventsReader rd;
        const msgpack_object *ev;
        uint64_t offset;
        int r = events_reader_open(&rd, path);
        coverage_stream_begin(c);
        while (r >= 0 && (r = events_reader_next(&rd, &ev, &offset)) > 0)
                if ((r = coverage_add(c, ev)) < 0)
                        snprintf(rd.err, sizeof rd.err, "%s: %s", path, strerror(-r));
        if (r == 0)
                r = events_reader_end(&rd);
        if (r < 0)
                snprintf(err, errlen, "%s", rd.err);
        events_reader_close(&rd);
        return r;
}
