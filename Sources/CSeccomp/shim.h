/* libseccomp from Debian's libseccomp-dev (pkg-config libseccomp). */
#include <seccomp.h>
