/* fuzz_fixture_meta.c: libFuzzer target for a fixture entry's meta.json (src/host/cache/
 * fixture_meta.c), which comes from the cache on disk: any bytes there are parsed into an
 * entry or refused with a reason, never trusted. The input is written as DIR/meta.json of
 * an entry named "disk-fixture" (the seed corpus's), then parsed. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fixture_internal.h"

#define NAME "disk-fixture"
#define KEY  "88c3cd8172942d5ab94c26eb2d14eaef"

static char dir[] = "/tmp/provium-fuzz-meta-XXXXXX";
static char meta[sizeof dir + 16];

static void remove_dir(void)
{
        (void) unlink(meta);
        (void) rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
        (void) argc, (void) argv;
        if (!mkdtemp(dir))
                abort();
        snprintf(meta, sizeof meta, "%s/meta.json", dir);
        atexit(remove_dir);
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        FILE *f = fopen(meta, "wb");
        if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0)
                abort();
        FixtureEntry *e = fixture__entry_new(NAME, KEY, dir);
        if (!e)
                return 0;
        VmHashes *h = NULL;
        char reason[256] = "";
        int r = fixture__entry_parse(e, &h, reason, sizeof reason);
        if (r == 0) {
                for (size_t i = 0; i < e->nvms; i++)
                        if (!fixture__name_valid(e->vms[i].name) ||
                            !fixture__hex_valid(h[i].state, 16) ||
                            !fixture__hex_valid(h[i].ram, 16))
                                abort(); /* what is accepted is what the loader relies on */
        } else if (r != -EBADMSG && r != -ENOMEM)
                abort();
        else if (r == -EBADMSG && reason[0] == '\0')
                abort(); /* a refusal always says why */
        free(h);
        fixture_entry_free(e);
        return 0;
}
