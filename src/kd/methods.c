/* The method table: -kd_method's choices, in the order -help lists them. */
#include "kd_impl.h"

const KDMethod *const ackd_kd_methods[] = {
    &ackd_kd_none, &ackd_kd_kd,   &ackd_kd_logits, &ackd_kd_fitnet,    &ackd_kd_at,
    &ackd_kd_rkd,  &ackd_kd_dkd,  &ackd_kd_ctkd,   &ackd_kd_lskd,      &ackd_kd_clip,
    &ackd_kd_crd,  &ackd_kd_c2kd, &ackd_kd_mnf,    &ackd_kd_distilvpr, NULL};
