/* image_cmd.h: `provium image build|ls|rm`: guest images and their recipes. */
#pragma once

/* argv[0] is "image". Returns the exit status: 0, 1 on an error, 2 on a usage error. */
int image_cmd_main(int argc, char **argv);
