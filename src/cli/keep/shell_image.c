/* shell_image.c: provium shell --image NAME: a fresh VM of an image for poking around.
 *
 * It runs a one-test file that boots the VM, through provium itself with --keep-always (the
 * runner keeps the file's VMs even though it passed), attaches a shell to it, and stops the
 * run when the shell ends. Recipes are looked up in ./images first, as for a test file here.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cachedir.h"
#include "kept_cmd.h"

/* An image name or recipe path we can put in a Lua string as it is. */
static bool image_name_ok(const char *s)
{
        return s[0] && strlen(s) < 200 &&
               strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._/-") ==
                   strlen(s);
}

/* The VM's name: the image's stem ("default", "web" of images/web.lua). */
static void vm_name_for(const char *image, char *out, size_t size)
{
        const char *base = strrchr(image, '/') ? strrchr(image, '/') + 1 : image;
        size_t n = strcspn(base, ".");
        snprintf(out, size, "%.*s", (int) (n ? n : 1), n ? base : "vm");
}

static int write_test_file(const char *path, const char *vm, const char *image)
{
        FILE *f = fopen(path, "we");
        if (!f)
                return -errno;
        fprintf(f,
                "-- written by provium shell --image: boots the VM the shell attaches to\n"
                "test(\"shell --image %s\", function()\n"
                "    provium:vm(\"%s\", \"%s\"):boot()\n"
                "end)\n",
                image, vm, image);
        return fclose(f) == 0 ? 0 : -errno;
}

/* ./images ahead of the recipe path, as a test file in this directory would have it. */
static void add_cwd_images(void)
{
        char cwd[4096], *path = NULL;
        const char *old = getenv("PROVIUM_IMAGE_PATH");
        if (!getcwd(cwd, sizeof cwd) ||
            asprintf(&path, "%s/images%s%s", cwd, old ? ":" : "", old ? old : "") < 0)
                return;
        (void) setenv("PROVIUM_IMAGE_PATH", path, 1);
        free(path);
}

/* Runs provium on file, keeping its VMs; its output goes to log. Returns its exit status. */
static int run_kept(const char *file, const char *accel, const char *log)
{
        pid_t pid = fork();
        if (pid < 0)
                return -errno;
        if (pid == 0) {
                int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
                if (fd < 0 || dup2(fd, STDOUT_FILENO) < 0 || dup2(fd, STDERR_FILENO) < 0)
                        _exit(127);
                execl("/proc/self/exe", "provium", "run", "--keep-always", "--progress", "never",
                      "--accel", accel, file, (char *) NULL);
                _exit(127);
        }
        int st;
        while (waitpid(pid, &st, 0) < 0)
                if (errno != EINTR)
                        return -errno;
        return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void print_file(const char *path)
{
        char buf[4096];
        FILE *f = fopen(path, "re");
        size_t n;
        while (f && (n = fread(buf, 1, sizeof buf, f)) > 0)
                fwrite(buf, 1, n, stderr);
        if (f)
                fclose(f);
}

/* The kept run of file, which the run above left. */
static int find_kept(const char *file, KeptRun *ret)
{
        KeptRun *v;
        size_t n;
        int r = kept_list(&v, &n);
        if (r < 0)
                return r;
        r = -ENOENT;
        for (size_t i = 0; i < n && r < 0; i++)
                if (strcmp(v[i].file, file) == 0)
                        *ret = v[i], r = 0;
        free(v);
        return r;
}

int shell_image_main(int argc, char **argv)
{
        const char *accel = "auto";
        if (argc == 4 && strcmp(argv[2], "--accel") == 0)
                accel = argv[3];
        if ((argc != 2 && argc != 4) || (argc == 4 && strcmp(argv[2], "--accel") != 0)) {
                fprintf(stderr, "usage: provium shell --image NAME [--accel auto|kvm|tcg]\n");
                return 2;
        }
        const char *image = argv[1];
        if (!image_name_ok(image)) {
                fprintf(stderr,
                        "provium shell: --image '%s': expected an image name or a "
                        "recipe's path (letters, digits, '.', '_', '-', '/')\n",
                        image);
                return 2;
        }
        char dir[] = "/tmp/provium-shell-XXXXXX", file[128], log[128], vm[64];
        if (!mkdtemp(dir)) {
                fprintf(stderr, "provium shell: mkdtemp %s: %s\n", dir, strerror(errno));
                return 1;
        }
        snprintf(file, sizeof file, "%s/shell.test.lua", dir);
        snprintf(log, sizeof log, "%s/run.log", dir);
        vm_name_for(image, vm, sizeof vm);
        add_cwd_images();
        int status = write_test_file(file, vm, image);
        if (status == 0) {
                fprintf(stderr, "provium shell: booting a VM of image %s...\n", image);
                status = run_kept(file, accel, log);
        }
        KeptRun k;
        if (status != 0) {
                print_file(log);
                fprintf(stderr, "provium shell: could not boot a VM of image %s\n", image);
                status = status < 0 ? 1 : status;
        } else if (find_kept(file, &k) < 0) {
                print_file(log);
                fprintf(stderr, "provium shell: the VM of image %s was not kept\n", image);
                status = 1;
        } else {
                status = shell_attach(&k, vm);
                (void) kept_stop(&k);
        }
        (void) cachedir_rm_rf(dir);
        return status;
}
