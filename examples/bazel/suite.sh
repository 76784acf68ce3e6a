#!/bin/sh
# The body of //:suite. The binary and the test files live outside the
# workspace, so both come from the environment (run.sh passes them with
# --test_env). Provium reads Bazel's TEST_TOTAL_SHARDS, TEST_SHARD_INDEX,
# TEST_SHARD_STATUS_FILE and XML_OUTPUT_FILE itself.
: "${PROVIUM:?pass --test_env=PROVIUM=/abs/path/to/provium}"
: "${PROVIUM_SUITE:?pass --test_env=PROVIUM_SUITE=/abs/dir/of/test/files}"
: "${XDG_CACHE_HOME:?pass --test_env=XDG_CACHE_HOME=/abs/cache/dir (Bazel gives tests no HOME)}"
exec "$PROVIUM" run "$PROVIUM_SUITE"
