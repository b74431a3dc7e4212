/*
 * driver.c: loads libcuda at run time and binds the entry points of driver.h.
 *
 * Why dlopen + cuGetProcAddress instead of linking: a program using ptxq must
 * start (and generate kernels, run the CPU reference) on machines without a
 * driver, and a symbol looked up by plain name would be the oldest ABI of a
 * call (cuMemAlloc is the 32-bit-pointer one), while cuGetProcAddress with
 * our CUDA_VERSION (or the driver's, if older) binds the variant whose
 * prototype cuda.h declares.
 *
 * The load runs once per process; its outcome, failure message included, is
 * remembered so every later ptxq_open reports the same thing.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "driver.h"
#include "ptxq.h"

struct ptxq_driver ptxq__cu;

/* cuGetProcAddress_v2 (CUDA 12.0+) reports why a symbol was not found; the
 * older cuGetProcAddress (11.3+) lacks the last argument. */
typedef CUresult (*get_proc_address_v2_fn)(const char *symbol, void **fn, int cuda_version,
                                           cuuint64_t flags,
                                           CUdriverProcAddressQueryResult *status);
typedef CUresult (*get_proc_address_v1_fn)(const char *symbol, void **fn, int cuda_version,
                                           cuuint64_t flags);

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
/* Every failure to load is PTXQ_ERR_NO_DEVICE: without a working driver
 * there is no GPU to use. */
static int load_status = PTXQ_ERR_NO_DEVICE;
static char load_message[512] = "libcuda was not loaded";

static CUresult lookup(get_proc_address_v2_fn get_v2, get_proc_address_v1_fn get_v1, int version,
                       const char *symbol, void **fn) {
  if (get_v2 != NULL) return get_v2(symbol, fn, version, CU_GET_PROC_ADDRESS_DEFAULT, NULL);
  return get_v1(symbol, fn, version, CU_GET_PROC_ADDRESS_DEFAULT);
}

/* The ABI version to ask cuGetProcAddress for: our cuda.h's, or the
 * driver's own when that is older (asking a driver for a version newer than
 * itself fails with CUDA_ERROR_INVALID_VALUE). None of the calls in driver.h
 * changed prototype between CUDA 11.4 and 13.0 (cuStreamBeginCapture is the
 * 10.1 variant that takes a mode; cuGraphInstantiateWithFlags, not
 * cuGraphInstantiate, whose prototype changed in 12.0), so an older
 * driver's variants are called correctly through our prototypes (recheck
 * this list when moving to a newer cuda.h). cuGraphInstantiateWithFlags
 * needs a 11.4 driver; the PTX we generate (.version 7.8) needs 11.8
 * anyway (12.0 for sm_90's .version 8.0). */
static int abi_version(void *library) {
  typedef CUresult (*driver_get_version_fn)(int *version);
  driver_get_version_fn get_version = NULL;
  void *symbol = dlsym(library, "cuDriverGetVersion");
  int version = 0;
  if (symbol != NULL) memcpy(&get_version, &symbol, sizeof symbol);
  if (get_version == NULL || get_version(&version) != CUDA_SUCCESS || version <= 0)
    return CUDA_VERSION;
  return version < CUDA_VERSION ? version : CUDA_VERSION;
}

/* No error names yet (cuGetErrorName is one of the symbols being looked
 * up), so name the likely causes by number. */
static void describe_missing(const char *path, const char *symbol, CUresult result) {
  if (result == CUDA_ERROR_STUB_LIBRARY)
    snprintf(load_message, sizeof load_message,
             "%s is the CUDA toolkit's stub library, not a driver (CUDA_ERROR_STUB_LIBRARY)", path);
  else
    snprintf(load_message, sizeof load_message,
             "%s: cuGetProcAddress(%s) failed with CUresult %d (driver too old?)", path, symbol,
             (int)result);
}

static void load_driver(void) {
  const char *path = getenv("PTXQ_LIBCUDA");
  if (path == NULL || path[0] == '\0') path = "libcuda.so.1";

  void *library = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (library == NULL) {
    const char *why = dlerror();
    snprintf(load_message, sizeof load_message, "cannot load %s: %s", path,
             why ? why : "unknown dlopen error");
    return;
  }

  /* dlsym returns an object pointer; memcpy moves it into a function
   * pointer without the conversion ISO C leaves undefined. */
  get_proc_address_v2_fn get_v2 = NULL;
  get_proc_address_v1_fn get_v1 = NULL;
  void *symbol = dlsym(library, "cuGetProcAddress_v2");
  if (symbol != NULL) {
    memcpy(&get_v2, &symbol, sizeof symbol);
  } else if ((symbol = dlsym(library, "cuGetProcAddress")) != NULL) {
    memcpy(&get_v1, &symbol, sizeof symbol);
  } else {
    snprintf(load_message, sizeof load_message,
             "%s has no cuGetProcAddress: not a CUDA driver, or one older than CUDA 11.3", path);
    return;
  }

  /* Bind into a local table and publish it only when complete, so a failed
   * load leaves ptxq__cu all NULL. */
  struct ptxq_driver table;
  memset(&table, 0, sizeof table);
  int version = abi_version(library);
  CUresult result;
  void *fn;
#define PTXQ_BIND(name, params)                                                                    \
  fn = NULL;                                                                                       \
  result = lookup(get_v2, get_v1, version, "cu" #name, &fn);                                       \
  if (result != CUDA_SUCCESS || fn == NULL) {                                                      \
    describe_missing(path, "cu" #name, result);                                                    \
    return;                                                                                        \
  }                                                                                                \
  memcpy(&table.name, &fn, sizeof fn);
  PTXQ_DRIVER_ENTRY_POINTS(PTXQ_BIND)
#undef PTXQ_BIND

  fn = NULL;
  if (lookup(get_v2, get_v1, version, "cuLaunchKernelEx", &fn) == CUDA_SUCCESS && fn != NULL)
    memcpy(&table.LaunchKernelEx, &fn, sizeof fn);

  result = table.Init(0);
  if (result != CUDA_SUCCESS) {
    /* Whatever cuInit says (no device, driver/kernel-module mismatch, no
     * permission on /dev/nvidia*), there is no usable GPU: NO_DEVICE, with
     * the driver's own words in the message. */
    const char *name = NULL, *text = NULL;
    if (table.GetErrorName(result, &name) != CUDA_SUCCESS || name == NULL)
      name = "unknown CUresult";
    if (table.GetErrorString(result, &text) != CUDA_SUCCESS || text == NULL) text = "";
    snprintf(load_message, sizeof load_message, "cuInit failed: %s (%s)", name, text);
    return;
  }

  ptxq__cu = table;
  load_status = PTXQ_OK;
  load_message[0] = '\0';
  /* The library stays loaded for the life of the process: contexts, and
   * pointers into it (error names), may outlive any one caller. */
}

int ptxq__driver_load(const char **message) {
  pthread_once(&load_once, load_driver);
  if (message != NULL) *message = load_message;
  return load_status;
}
