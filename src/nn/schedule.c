/* Learning-rate schedules in closed form (torch.optim.lr_scheduler's
 * _get_closed_form_lr), so a resumed run recomputes its rate from the step
 * alone, with no scheduler state to checkpoint. */
#include <ackd/nn.h>
#include <math.h>

const char *const AckdScheduleNames[] = {"constant", "multistep", "cosine", "poly"};

double AckdScheduleLR(const AckdSchedule *s, PetscInt t)
{
  double lr = s->base_lr;
  switch (s->kind) {
  case ACKD_SCHEDULE_CONSTANT:
    break;
  case ACKD_SCHEDULE_MULTISTEP:
    for (PetscInt i = 0; i < s->nmilestones; i++)
      if (t >= s->milestones[i]) lr *= s->gamma;
    break;
  case ACKD_SCHEDULE_COSINE:
    lr = s->eta_min + (s->base_lr - s->eta_min) * (1.0 + cos(PETSC_PI * (double)t / (double)s->total)) / 2.0;
    break;
  case ACKD_SCHEDULE_POLY:
    lr = s->base_lr * pow(1.0 - (double)PetscMin(t, s->total) / (double)s->total, s->power);
    break;
  }
  if (s->warmup > 0 && t < s->warmup)
    lr *= s->warmup_start_factor + (1.0 - s->warmup_start_factor) * (double)t / (double)s->warmup;
  return lr;
}
