/* Library version. */
#include "internal.h"

#include <warmexec/version.h>

const char *wx_version(void)
{
    return WX_VERSION_STRING;
}
