/* coverage_main.c: provium-coverage, the same program as `provium coverage`. */
#include "coverage_cmd.h"

int main(int argc, char **argv)
{
        return coverage_cmd_main(argc, argv);
}
