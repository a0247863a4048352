#include "cfuzzdriver.h"
