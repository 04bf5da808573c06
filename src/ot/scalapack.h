/* The few BLACS, ScaLAPACK and PBLAS entry points ackd uses. Debian's
 * libscalapack-openmpi installs no C header, so they are declared here, with
 * the types of its Fortran (trailing underscore, by reference) and C BLACS
 * interfaces. Private to src/ot. */
#ifndef ACKD_OT_SCALAPACK_H
#define ACKD_OT_SCALAPACK_H

#include <mpi.h>

/* A descriptor of a block-cyclic matrix: 9 integers, see descinit_. */
enum { ACKD_DESC_LEN = 9, ACKD_DESC_LLD = 8 };

int  Csys2blacs_handle(MPI_Comm comm);
void Cfree_blacs_system_handle(int handle);
void Cblacs_gridinit(int *context, const char *order, int nprow, int npcol);
void Cblacs_gridinfo(int context, int *nprow, int *npcol, int *myrow, int *mycol);
void Cblacs_gridexit(int context);

int  numroc_(const int *n, const int *nb, const int *iproc, const int *isrcproc, const int *nprocs);
void descinit_(int *desc, const int *m, const int *n, const int *mb, const int *nb, const int *irsrc, const int *icsrc,
               const int *context, const int *lld, int *info);
void pdgemm_(const char *transa, const char *transb, const int *m, const int *n, const int *k, const double *alpha,
             const double *a, const int *ia, const int *ja, const int *desca, const double *b, const int *ib,
             const int *jb, const int *descb, const double *beta, double *c, const int *ic, const int *jc,
             const int *descc);
/* Reference BLAS (OpenBLAS): the online mode's local cost tiles. */
void dgemm_(const char *transa, const char *transb, const int *m, const int *n, const int *k, const double *alpha,
            const double *a, const int *lda, const double *b, const int *ldb, const double *beta, double *c,
            const int *ldc);
/* Copies a distributed (sub)matrix between two block-cyclic layouts; `context`
 * must span every process of both. Indices are 1-based. */
void Cpdgemr2d(int m, int n, const double *a, int ia, int ja, const int *desca, double *b, int ib, int jb,
               const int *descb, int context);

#endif
