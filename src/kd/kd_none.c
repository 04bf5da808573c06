/* -kd_method none: cross-entropy only, the student trained alone (with
 * -sembridge, SKA alone on top). */
#include "kd_impl.h"

const KDMethod ackd_kd_none = {.name = "none", .help = "cross-entropy only"};
