/*
 * Run a libFuzzer entry point over every file of a corpus directory,
 * without libFuzzer: the corpus replay test of every build (under ASan and
 * UBSan in the sanitizer build).
 *
 *   fuzz_frame_replay DIR [MIN_FILES]
 *
 * Files are run in name order.  Exits 1 when DIR cannot be read or holds
 * fewer than MIN_FILES (default 1) regular files; a crash or sanitizer
 * report in the target ends the program as it would under libFuzzer.
 */
#define _GNU_SOURCE 1
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The whole file at `path` in a fresh exact-size buffer (NULL on error). */
static uint8_t *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf = NULL;
    long size;

    if (!f)
        return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (size = ftell(f)) >= 0 &&
        fseek(f, 0, SEEK_SET) == 0) {
        /* Exact size, so that ASan sees any read past the input. */
        buf = malloc(size > 0 ? (size_t)size : 1);
        if (buf && fread(buf, 1, (size_t)size, f) != (size_t)size) {
            free(buf);
            buf = NULL;
        }
        *len = (size_t)size;
    }
    fclose(f);
    return buf;
}

int main(int argc, char **argv)
{
    struct dirent **names = NULL;
    long min_files = argc > 2 ? atol(argv[2]) : 1;
    int n, runs = 0;

    if (argc < 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR [MIN_FILES]\n", argv[0]);
        return 2;
    }
    n = scandir(argv[1], &names, NULL, alphasort);
    if (n < 0) {
        perror(argv[1]);
        return 1;
    }
    for (int i = 0; i < n; i++) {
        char path[4096];
        struct stat st;
        uint8_t *data;
        size_t len = 0;

        snprintf(path, sizeof(path), "%s/%s", argv[1], names[i]->d_name);
        free(names[i]);
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        data = read_all(path, &len);
        if (!data) {
            perror(path);
            free(names);
            return 1;
        }
        LLVMFuzzerTestOneInput(data, len);
        free(data);
        runs++;
    }
    free(names);
    printf("replayed %d inputs from %s\n", runs, argv[1]);
    if (runs < min_files) {
        fprintf(stderr, "expected at least %ld inputs\n", min_files);
        return 1;
    }
    return 0;
}
