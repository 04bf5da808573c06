/* oneDNN plumbing shared by convolution, batch norm and pooling. */
#include "nn/nn_private.h"

PetscErrorCode AckdNNDescTensor(dnnl_memory_desc_t *md, const AckdTensor *t, const char *layer)
{
  dnnl_dims_t dims = {t->n, t->c, t->h, t->w};
  PetscInt    b    = AckdNNBlock(t);

  PetscFunctionBeginUser;
  PetscCheck(b == 1 || b == 8 || b == 16, PETSC_COMM_SELF, PETSC_ERR_ARG_OUTOFRANGE,
             "layer %s: channel block %" PetscInt_FMT " is none of 1, 8, 16", layer, b);
  AckdCallDnnl(dnnl_memory_desc_init_by_tag(md, 4, dims, dnnl_f32,
                                            b == 16  ? dnnl_nChw16c
                                            : b == 8 ? dnnl_nChw8c
                                                     : dnnl_nchw),
               "layer %s: describing a %" PetscInt_FMT "x%" PetscInt_FMT "x%" PetscInt_FMT "x%" PetscInt_FMT
               " tensor in block %" PetscInt_FMT,
               layer, t->n, t->c, t->h, t->w, b);
  PetscFunctionReturn(0);
}

PetscInt AckdNNBlockOf(const dnnl_memory_desc_t *md)
{
  const dnnl_format_tag_t tags[3]   = {dnnl_nchw, dnnl_nChw8c, dnnl_nChw16c};
  const PetscInt          blocks[3] = {0, 8, 16};
  if (!md || md->ndims != 4) return -1;
  for (int i = 0; i < 3; i++) {
    dnnl_memory_desc_t candidate;
    if (dnnl_memory_desc_init_by_tag(&candidate, 4, md->dims, dnnl_f32, tags[i]) != dnnl_success) continue;
    if (dnnl_memory_desc_equal(&candidate, md)) return blocks[i];
  }
  return -1;
}

PetscErrorCode AckdNNDescVector(dnnl_memory_desc_t *md, PetscInt size, const char *layer)
{
  dnnl_dims_t dims = {size};

  PetscFunctionBeginUser;
  AckdCallDnnl(dnnl_memory_desc_init_by_tag(md, 1, dims, dnnl_f32, dnnl_a),
               "layer %s: describing a vector of %" PetscInt_FMT, layer, size);
  PetscFunctionReturn(0);
}

PetscErrorCode AckdNNMemoryCreate(AckdEngine *engine, const dnnl_memory_desc_t *md, dnnl_memory_t *mem,
                                  const char *layer)
{
  PetscFunctionBeginUser;
  AckdCallDnnl(dnnl_memory_create(mem, md, engine->backend->engine, DNNL_MEMORY_NONE),
               "layer %s: creating a memory object", layer);
  PetscFunctionReturn(0);
}

PetscErrorCode AckdNNMemoryAllocate(AckdEngine *engine, const dnnl_memory_desc_t *md, dnnl_memory_t *mem,
                                    const char *layer)
{
  PetscFunctionBeginUser;
  AckdCallDnnl(dnnl_memory_create(mem, md, engine->backend->engine, DNNL_MEMORY_ALLOCATE),
               "layer %s: allocating a workspace of %zu bytes", layer, dnnl_memory_desc_get_size(md));
  PetscFunctionReturn(0);
}

PetscErrorCode AckdNNMemoryBind(dnnl_memory_t mem, const void *data, const char *layer)
{
  PetscFunctionBeginUser;
  /* oneDNN's API takes a non-const handle for inputs as well; it never writes them. */
  AckdCallDnnl(dnnl_memory_set_data_handle(mem, (void *)data), "layer %s: binding a buffer", layer);
  PetscFunctionReturn(0);
}

void AckdNNMemoryDestroy(dnnl_memory_t *mem)
{
  if (*mem) dnnl_memory_destroy(*mem);
  *mem = NULL;
}

PetscErrorCode AckdNNPrimitiveCreate(AckdEngine *engine, const void *op_desc, const_dnnl_primitive_desc_t hint,
                                     dnnl_primitive_t *prim, dnnl_primitive_desc_t *pd_out, const char *layer,
                                     const char *what)
{
  dnnl_primitive_desc_t pd;

  PetscFunctionBeginUser;
  AckdCallDnnl(dnnl_primitive_desc_create(&pd, op_desc, NULL, engine->backend->engine, hint),
               "layer %s: no oneDNN %s for this shape", layer, what);
  dnnl_status_t status = dnnl_primitive_create(prim, pd);
  if (pd_out && status == dnnl_success)
    *pd_out = pd;
  else
    dnnl_primitive_desc_destroy(pd);
  AckdCallDnnl(status, "layer %s: creating the oneDNN %s", layer, what);
  PetscFunctionReturn(0);
}

void AckdNNPrimitiveDestroy(dnnl_primitive_t *prim)
{
  if (*prim) dnnl_primitive_destroy(*prim);
  *prim = NULL;
}

PetscErrorCode AckdNNExecute(AckdEngine *engine, dnnl_primitive_t prim, int nargs, const dnnl_exec_arg_t *args,
                             const char *layer, const char *what)
{
  PetscFunctionBeginUser;
  AckdCallDnnl(dnnl_primitive_execute(prim, engine->backend->stream, nargs, args), "layer %s: running %s", layer, what);
  AckdCallDnnl(dnnl_stream_wait(engine->backend->stream), "layer %s: waiting for %s", layer, what);
  PetscFunctionReturn(0);
}

void *AckdNNPlanCacheFind(const AckdNNPlanCache *cache, const AckdNNPlanKey *key)
{
  for (PetscInt i = 0; i < cache->count; i++) {
    const AckdNNPlanKey *k = &cache->key[i];
    if (cache->plan[i] && k->n == key->n && k->c == key->c && k->h == key->h && k->w == key->w &&
        k->x_block == key->x_block && k->y_block == key->y_block && k->precision == key->precision)
      return cache->plan[i];
  }
  return NULL;
}

PetscInt AckdNNPlanCacheSlot(AckdNNPlanCache *cache, const AckdNNPlanKey *key, void (*destroy)(void *))
{
  PetscInt slot;
  if (cache->count < ACKD_NN_PLANS) {
    slot = cache->count++;
  } else {
    slot                = cache->next_evicted;
    cache->next_evicted = (slot + 1) % ACKD_NN_PLANS;
    if (cache->plan[slot]) destroy(cache->plan[slot]);
  }
  cache->plan[slot] = NULL;
  cache->key[slot]  = *key;
  return slot;
}

void AckdNNPlanCacheClear(AckdNNPlanCache *cache, void (*destroy)(void *))
{
  for (PetscInt i = 0; i < cache->count; i++)
    if (cache->plan[i]) destroy(cache->plan[i]);
  cache->count = cache->next_evicted = 0;
}

PetscErrorCode AckdNNPortCreate(AckdEngine *engine, const dnnl_memory_desc_t *user_md, const_dnnl_primitive_desc_t pd,
                                dnnl_query_t what, PetscBool output, AckdNNPort *port, const char *layer)
{
  const dnnl_memory_desc_t *chosen = dnnl_primitive_desc_query_md(pd, what, 0);
  dnnl_primitive_desc_t     reorder_pd;

  PetscFunctionBeginUser;
  PetscCall(PetscMemzero(port, sizeof *port));
  port->output = output;
  PetscCall(AckdNNMemoryCreate(engine, user_md, &port->user, layer));
  PetscCheck(chosen, PETSC_COMM_SELF, PETSC_ERR_LIB, "layer %s: oneDNN reports no layout for an argument", layer);
  if (dnnl_memory_desc_equal(chosen, user_md)) PetscFunctionReturn(0);
  PetscCall(AckdNNMemoryAllocate(engine, chosen, &port->inner, layer));
  dnnl_memory_desc_t as_bf16 = *user_md;
  as_bf16.data_type          = dnnl_bf16;
  if (!output && user_md->data_type == dnnl_f32 && dnnl_memory_desc_equal(chosen, &as_bf16)) {
    port->round_bf16 = dnnl_memory_desc_get_size(chosen) / sizeof(uint16_t);
    PetscFunctionReturn(0);
  }
  AckdCallDnnl(dnnl_reorder_primitive_desc_create(&reorder_pd, output ? chosen : user_md, engine->backend->engine,
                                                  output ? user_md : chosen, engine->backend->engine, NULL),
               "layer %s: no reorder between the plain and the blocked layout", layer);
  dnnl_status_t status = dnnl_primitive_create(&port->reorder, reorder_pd);
  dnnl_primitive_desc_destroy(reorder_pd);
  AckdCallDnnl(status, "layer %s: creating a reorder", layer);
  PetscFunctionReturn(0);
}

PetscErrorCode AckdNNPortBind(AckdEngine *engine, AckdNNPort *port, const void *data, dnnl_memory_t *mem,
                              const char *layer)
{
  PetscFunctionBeginUser;
  PetscCall(AckdNNMemoryBind(port->user, data, layer));
  *mem = port->inner ? port->inner : port->user;
  if (port->round_bf16) {
    void *to;
    AckdCallDnnl(dnnl_memory_get_data_handle(port->inner, &to), "layer %s: the bf16 buffer", layer);
    AckdRoundBF16(data, to, port->round_bf16);
  } else if (port->inner && !port->output) {
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, port->user}, {DNNL_ARG_TO, port->inner}};
    PetscCall(AckdNNExecute(engine, port->reorder, 2, args, layer, "reorder to the blocked layout"));
  }
  PetscFunctionReturn(0);
}

PetscErrorCode AckdNNPortFinish(AckdEngine *engine, AckdNNPort *port, const char *layer)
{
  PetscFunctionBeginUser;
  if (port->inner && port->output) {
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, port->inner}, {DNNL_ARG_TO, port->user}};
    PetscCall(AckdNNExecute(engine, port->reorder, 2, args, layer, "reorder to the plain layout"));
  }
  PetscFunctionReturn(0);
}

void AckdNNPortDestroy(AckdNNPort *port)
{
  AckdNNMemoryDestroy(&port->user);
  AckdNNMemoryDestroy(&port->inner);
  AckdNNPrimitiveDestroy(&port->reorder);
}
