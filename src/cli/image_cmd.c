/* image_cmd.c: `provium image build [NAME|PATH.lua...] [--force]`, `provium image ls` and
 * `provium image rm NAME...`. A recipe given as a path (tests/images/redis.lua) is found
 * there; a bare NAME along the recipe search path (recipe.h). */
#include "image_cmd.h"
#include "env.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache_cmd.h"
#include "image.h"
#include "strfmt.h"

#define USAGE "expected 'build [NAME|PATH.lua...] [--force]', 'ls' or 'rm NAME...'"

/* For a recipe path DIR/NAME.lua: puts DIR first on the recipe path (env.h's image_path,
 * while the command sets up) and returns NAME (in arg's storage). Other arguments are names
 * and come back as they are. */
static char *recipe_arg(char *arg)
{
        size_t n = strlen(arg);
        char *slash = strrchr(arg, '/');

        if (n < 5 || strcmp(arg + n - 4, ".lua") != 0)
                return arg;
        arg[n - 4] = '\0';
        if (!slash)
                return arg;
        *slash = '\0';
        ProviumEnv *env = env_setup();
        const char *old = env->image_path;
        char *path = xasprintf("%s%s%s", slash == arg ? "/" : arg, old ? ":" : "", old ? old : "");
        if (!path || env_set(&env->image_path, path) < 0)
                fprintf(stderr, "provium: image: %s\n", strerror(ENOMEM));
        free(path);
        return slash + 1;
}

static int image_build_cmd(int argc, char **argv)
{
        char err[8192];
        bool force = false;
        int nnames = 0, status = 0;

        for (int i = 0; i < argc; i++) {
                if (strcmp(argv[i], "--force") == 0)
                        force = true;
                else if (argv[i][0] == '-') {
                        fprintf(stderr, "provium: image build: unknown option %s\n", argv[i]);
                        return 2;
                } else
                        nnames++;
        }
        for (int i = 0; i < argc || nnames == 0; i++) {
                const char *name = nnames == 0 ? "default" : argv[i];
                if (nnames > 0 && name[0] == '-')
                        continue;
                if (nnames > 0)
                        name = recipe_arg(argv[i]);
                Image *img = NULL;
                if (image_build(name, force, &img, err, sizeof err) < 0) {
                        fprintf(stderr, "provium: %s\n", err);
                        status = 1;
                } else {
                        printf("%s %s %s\n", img->name, img->key, img->dir);
                        image_free(img);
                }
                if (nnames == 0)
                        break;
        }
        return status;
}

static int image_ls_cmd(void)
{
        Image **list = NULL;
        size_t n = 0;
        int r = image_list(&list, &n);

        if (r < 0) {
                fprintf(stderr, "provium: image ls: %s\n", strerror(-r));
                return 1;
        }
        printf("%-16s %-34s %-9s %10s  %s\n", "NAME", "KEY", "PACK", "SIZE", "DIR");
        for (size_t i = 0; i < n; i++)
                printf("%-16s %-34s %-9s %9.1fM  %s\n", list[i]->name, list[i]->key,
                       list[i]->rootfs ? "disk" : "initramfs", (double) list[i]->size / (1 << 20),
                       list[i]->dir);
        image_list_free(list, n);
        return 0;
}

int image_cmd_main(int argc, char **argv)
{
        if (argc >= 2 && strcmp(argv[1], "build") == 0)
                return image_build_cmd(argc - 2, argv + 2);
        if (argc == 2 && strcmp(argv[1], "ls") == 0)
                return image_ls_cmd();
        if (argc >= 3 && strcmp(argv[1], "rm") == 0)
                return cache_remove_images(argv + 2, argc - 2);
        fprintf(stderr, "provium: image: %s\n", USAGE);
        return 2;
}
