/* Exec target: "cd:DIR" changes directory (must work), "+NAME" opens NAME (must
 * exist), any other NAME is stat'ed (may be missing). */
#include "oracle.h"

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (strncmp(argv[i], "cd:", 3) == 0)
            MUST(chdir(argv[i] + 3));
        else if (argv[i][0] == '+')
            read_file(argv[i] + 1);
        else
            probe(argv[i]);
    }
    return 0;
}
