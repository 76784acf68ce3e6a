/* fuzz_recipe.c: libFuzzer target for the image recipe evaluator (src/host/image/recipe.c and
 * the words of recipe.lua it runs): a recipe is the test author's, trusted but maybe wrong, so
 * any text is a spec or an error naming the recipe, never a crash, a hang past the step limit
 * or a spec of another shape. The input is written as DIR/fuzz.lua and loaded as image "fuzz".
 * Checked beyond the sanitizers: a spec is a JSON object whose "name" is "fuzz"; a refusal
 * has a message naming the recipe's file. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "recipe.h"

static char dir[] = "/tmp/provium-fuzz-recipe-XXXXXX";
static char path[sizeof dir + 16];

static void remove_dir(void)
{
        (void) unlink(path);
        (void) rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
        (void) argc, (void) argv;
        if (!mkdtemp(dir))
                abort();
        snprintf(path, sizeof path, "%s/fuzz.lua", dir);
        atexit(remove_dir);
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        FILE *f = fopen(path, "wb");
        if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0)
                abort();
        json_t *spec = NULL;
        char err[4096] = "";
        int r = recipe_load("fuzz", path, &spec, err, sizeof err);
        if (r == 0) {
                const char *name = json_string_value(json_object_get(spec, "name"));
                if (!json_is_object(spec) || !name || strcmp(name, "fuzz") != 0)
                        abort();
        } else if (r > 0 || spec || !strstr(err, "fuzz.lua")) {
                fprintf(stderr, "refused without naming the recipe: %d %s\n", r, err);
                abort();
        }
        json_decref(spec);
        return 0;
}
