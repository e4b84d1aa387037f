/* warmexec cache: the result cache in <home>/cache.db. */
#include <stdio.h>
#include <string.h>

#include <warmexec/cache.h>

#include "cli.h"

/* Room for a path under home (PATH_MAX is POSIX, not C11). */
#define HOME_PATH_MAX 4096

static const char usage[] =
    "usage: warmexec cache stats [--json]\n"
    "       warmexec cache clear\n\n"
    "The result cache in <home>/cache.db (docs/cas.md): successful\n"
    "simulations by sim_root and aggregations by digest, shared by every\n"
    "warmexec process using this home.\n"
    "  stats   print the number of cached simulations and aggregations and\n"
    "          the bytes of their JSON; --json prints one JSON object\n"
    "  clear   remove every entry (CAS objects are kept)\n";

static int open_cache(cli_ctx *ctx, wx_cache **cache, char *path,
                      size_t size, wx_error *err)
{
    int rc = cli_home_path(ctx, "cache.db", path, size, err);

    return rc ? rc : wx_cache_open(path, cache, err);
}

static int print_stats(const char *path, const wx_cache_stats *s,
                       bool as_json, wx_error *err)
{
    json_t *v;
    int rc;

    if (!as_json) {
        printf("cache:        %s\nsims:         %lld\naggregations: %lld\n"
               "bytes:        %lld\n",
               path, (long long)s->sims, (long long)s->aggregations,
               (long long)s->bytes);
        return 0;
    }
    v = json_pack("{s:s,s:I,s:I,s:I}", "path", path, "sims",
                  (json_int_t)s->sims, "aggregations",
                  (json_int_t)s->aggregations, "bytes", (json_int_t)s->bytes);
    if (!v)
        return wx_error_set(err, WX_EINVAL, "cache path is not UTF-8: %s",
                            path);
    rc = cli_print_json(v, err);
    json_decref(v);
    return rc;
}

static int cache_stats(cli_ctx *ctx, bool as_json)
{
    wx_error err = WX_ERROR_INIT;
    wx_cache_stats stats = {0, 0, 0};
    wx_cache *cache = NULL;
    char path[HOME_PATH_MAX];
    int rc = open_cache(ctx, &cache, path, sizeof(path), &err);

    if (!rc)
        rc = wx_cache_stats_get(cache, &stats, &err);
    if (!rc)
        rc = print_stats(path, &stats, as_json, &err);
    wx_cache_close(cache);
    return rc ? cli_fail(&err) : EXIT_OK;
}

static int cache_stats_main(cli_ctx *ctx, int argc, char **argv)
{
    bool as_json = false;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(usage, stdout);
            return EXIT_OK;
        }
        if (strcmp(argv[i], "--json") != 0)
            return cli_usage_error("cache stats", "unknown argument '%s'",
                                   argv[i]);
        as_json = true;
    }
    return cache_stats(ctx, as_json);
}

static int cache_clear(cli_ctx *ctx)
{
    wx_error err = WX_ERROR_INIT;
    wx_cache_stats before = {0, 0, 0};
    wx_cache *cache = NULL;
    char path[HOME_PATH_MAX];
    int rc = open_cache(ctx, &cache, path, sizeof(path), &err);

    if (!rc)
        rc = wx_cache_stats_get(cache, &before, &err);
    if (!rc)
        rc = wx_cache_clear(cache, &err);
    if (!rc)
        printf("removed %lld sims and %lld aggregations from %s\n",
               (long long)before.sims, (long long)before.aggregations, path);
    wx_cache_close(cache);
    return rc ? cli_fail(&err) : EXIT_OK;
}

static int cache_clear_main(cli_ctx *ctx, int argc, char **argv)
{
    bool done;
    int first, rc = cli_simple_options("cache clear", usage, argc, argv,
                                       &first, &done);

    if (rc || done)
        return rc;
    if (first < argc)
        return cli_usage_error("cache clear", "unexpected argument '%s'",
                               argv[first]);
    return cache_clear(ctx);
}

int cmd_cache(cli_ctx *ctx, int argc, char **argv)
{
    bool done;
    int first, rc = cli_simple_options("cache", usage, argc, argv, &first,
                                       &done);

    if (rc || done)
        return rc;
    if (first >= argc)
        return cli_usage_error("cache", "missing subcommand (stats, clear)");
    if (strcmp(argv[first], "stats") == 0)
        return cache_stats_main(ctx, argc - first, argv + first);
    if (strcmp(argv[first], "clear") == 0)
        return cache_clear_main(ctx, argc - first, argv + first);
    return cli_usage_error("cache", "unknown subcommand '%s'", argv[first]);
}
