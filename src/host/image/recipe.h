/* recipe.h: image recipes (images/NAME.lua) read into build specs.
 *
 * A recipe is a Lua file written in the words of recipe.lua (base, packages, copy, write, dir,
 * user, group, modules, cmdline, hostname, pack). recipe_load runs it in a sandbox and returns
 * the spec scripts/build-recipe-image builds from, as JSON. docs/images.md describes both. */
#pragma once

#include <jansson.h>
#include <stddef.h>

/* Finds NAME's recipe: NAME.lua in each directory of $PROVIUM_IMAGE_PATH (':'-separated), then
 * ./images and ./tests/images. Returns a new path (free it), or NULL with errno ENOENT and the
 * directories searched in `searched` (a ", "-separated list). */
char *recipe_find(const char *name, char *searched, size_t searchedlen);

/* Reads recipe PATH (the image NAME) into a spec: {"format", "name", "recipe", "base",
 * "packages", "copies", "writes", "dirs", "users", "groups", "modules", "cmdline",
 * "cmdline_replace", "hostname", "pack"}; each item has the recipe "line" that made it. A copy's
 * "src" becomes an absolute path and gains "hash", the XXH3-128 of what it names (content,
 * modes, links; a directory recursively), so that the spec decides the cache key. Returns 0 and
 * *ret (json_decref it), or -errno with err naming the recipe and line, as Lua does
 * ("images/x.lua:3: packages: ..."). */
int recipe_load(const char *name, const char *path, json_t **ret, char *err, size_t errlen);

/* The recipe's path as the user should read it: relative to the working directory when it is
 * below it. Returns a new string, or NULL on ENOMEM. */
char *recipe_display_path(const char *path);
