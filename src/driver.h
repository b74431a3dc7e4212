/*
 * driver.h: the table of libcuda entry points ptxq calls.
 *
 * libcuda is never linked: driver.c dlopen()s it once per process and fetches
 * every entry point below through cuGetProcAddress, asking for the ABI of the
 * cuda.h we were compiled against (or the driver's, if older), so the driver
 * hands back the versioned variants (cuMemAlloc_v2, cuCtxPushCurrent_v2, ...)
 * whose prototypes match the ones written here. Everything else in src/ calls the driver through
 * ptxq__cu, e.g. ptxq__cu.MemAlloc(&ptr, bytes).
 */
#ifndef PTXQ_DRIVER_H
#define PTXQ_DRIVER_H

#include <cuda.h>

/* X(member, parameter list): the member is the API name without "cu"; the
 * prototypes are those of cuda.h (every driver call returns CUresult). */
#define PTXQ_DRIVER_ENTRY_POINTS(X)                                                      \
  X(Init, (unsigned int flags))                                                          \
  X(DriverGetVersion, (int *version))                                                    \
  X(DeviceGet, (CUdevice *device, int ordinal))                                          \
  X(DeviceGetCount, (int *count))                                                        \
  X(DeviceGetName, (char *name, int len, CUdevice device))                               \
  X(DeviceGetAttribute, (int *value, CUdevice_attribute attribute, CUdevice device))     \
  X(DeviceTotalMem, (size_t *bytes, CUdevice device))                                    \
  X(DevicePrimaryCtxRetain, (CUcontext *context, CUdevice device))                       \
  X(DevicePrimaryCtxRelease, (CUdevice device))                                          \
  X(CtxPushCurrent, (CUcontext context))                                                 \
  X(CtxPopCurrent, (CUcontext *context))                                                 \
  X(StreamCreate, (CUstream *stream, unsigned int flags))                                \
  X(StreamDestroy, (CUstream stream))                                                    \
  X(StreamSynchronize, (CUstream stream))                                                \
  X(StreamIsCapturing, (CUstream stream, CUstreamCaptureStatus *status))                 \
  X(MemAlloc, (CUdeviceptr *ptr, size_t bytes))                                          \
  X(MemFree, (CUdeviceptr ptr))                                                          \
  X(MemcpyHtoD, (CUdeviceptr dst, const void *src, size_t bytes))                        \
  X(MemcpyDtoH, (void *dst, CUdeviceptr src, size_t bytes))                              \
  X(MemcpyHtoDAsync, (CUdeviceptr dst, const void *src, size_t bytes, CUstream stream))  \
  X(MemcpyDtoHAsync, (void *dst, CUdeviceptr src, size_t bytes, CUstream stream))        \
  X(MemsetD8Async, (CUdeviceptr dst, unsigned char value, size_t count, CUstream stream))\
  X(ModuleLoadDataEx, (CUmodule *module, const void *image, unsigned int option_count,   \
                       CUjit_option *options, void **option_values))                     \
  X(ModuleUnload, (CUmodule module))                                                     \
  X(ModuleGetFunction, (CUfunction *function, CUmodule module, const char *name))        \
  X(FuncGetAttribute, (int *value, CUfunction_attribute attribute, CUfunction function)) \
  X(FuncSetAttribute, (CUfunction function, CUfunction_attribute attribute, int value))  \
  X(OccupancyMaxActiveBlocksPerMultiprocessor, (int *blocks, CUfunction function,        \
                                                int block_size, size_t dynamic_shared))  \
  X(LaunchKernel, (CUfunction function, unsigned int grid_x, unsigned int grid_y,        \
                   unsigned int grid_z, unsigned int block_x, unsigned int block_y,      \
                   unsigned int block_z, unsigned int shared_bytes, CUstream stream,     \
                   void **params, void **extra))                                         \
  X(EventCreate, (CUevent *event, unsigned int flags))                                   \
  X(EventRecord, (CUevent event, CUstream stream))                                       \
  X(EventSynchronize, (CUevent event))                                                   \
  X(EventElapsedTime, (float *ms, CUevent start, CUevent end))                           \
  X(EventDestroy, (CUevent event))                                                       \
  X(GetErrorName, (CUresult result, const char **name))                                  \
  X(GetErrorString, (CUresult result, const char **text))                                \
  X(MemGetInfo, (size_t *free_bytes, size_t *total_bytes))                               \
  X(StreamBeginCapture, (CUstream stream, CUstreamCaptureMode mode))                     \
  X(StreamEndCapture, (CUstream stream, CUgraph *graph))                                 \
  X(GraphInstantiateWithFlags, (CUgraphExec *exec, CUgraph graph, unsigned long long flags)) \
  X(GraphLaunch, (CUgraphExec exec, CUstream stream))                                    \
  X(GraphExecDestroy, (CUgraphExec exec))                                                \
  X(GraphDestroy, (CUgraph graph))

#define PTXQ_DRIVER_MEMBER(name, params) CUresult (*name) params;
struct ptxq_driver {
  PTXQ_DRIVER_ENTRY_POINTS(PTXQ_DRIVER_MEMBER)
  /* Optional (CUDA 12.0+; NULL when the driver lacks it): launches with
   * attributes, used for programmatic dependent launch. */
  CUresult (*LaunchKernelEx)(const CUlaunchConfig *config, CUfunction function, void **params,
                             void **extra);
};
#undef PTXQ_DRIVER_MEMBER

/* Filled by ptxq__driver_load; valid (every member non-NULL) once that has
 * returned PTXQ_OK, all NULL before or after a failed load. */
extern struct ptxq_driver ptxq__cu;

/* Loads libcuda and calls cuInit(0), once per process (later calls return
 * the first outcome). Returns PTXQ_OK or a negative ptxq status; *message
 * (if message is not NULL) receives the reason of a failure, "" on success.
 * Env PTXQ_LIBCUDA, if set, is the library path used instead of
 * "libcuda.so.1". */
int ptxq__driver_load(const char **message);

#endif
