   (appended by the project: the rest of the DDK 1.10 header, which the
   reference copy lacks; docs/ddk-integration.md, "Connection tables")
*/
PVRSRV_ERROR (*pfnGetDevPhysHeapAddrSize)(PVRSRV_DEVICE_CONFIG *psDevConfig,
PVRSRV_DEVICE_PHYS_HEAP eHeap,
IMG_UINT64 *pui64Size,
IMG_UINT64 *pui64Addr);
} sConfigFuncTab;
struct {
PVRSRV_ERROR (*pfnOnVmOnline)(IMG_UINT32 ui32OSID, IMG_UINT32 ui32Priority);
PVRSRV_ERROR (*pfnOnVmOffline)(IMG_UINT32 ui32OSID);
PVRSRV_ERROR (*pfnVMMConfigure)(VMM_CONF_PARAM eVMMParamType, IMG_UINT32 ui32ParamValue);
} sVmmFuncTab;
} VMM_PVZ_CONNECTION;
PVRSRV_ERROR VMMCreatePvzConnection(VMM_PVZ_CONNECTION **psPvzConnection);
void VMMDestroyPvzConnection(VMM_PVZ_CONNECTION *psPvzConnection);
#endif
