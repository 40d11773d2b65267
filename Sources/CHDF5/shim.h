#include <hdf5.h>
/* HDF5 type and flag constants are macros that do not import into Swift. */
static inline hid_t topiary_h5t_native_float(void) { return H5T_NATIVE_FLOAT; }
static inline hid_t topiary_h5t_native_int64(void) { return H5T_NATIVE_INT64; }
static inline unsigned topiary_h5f_acc_trunc(void) { return H5F_ACC_TRUNC; }
static inline unsigned topiary_h5f_acc_rdonly(void) { return H5F_ACC_RDONLY; }
static inline hid_t topiary_h5p_default(void) { return H5P_DEFAULT; }
static inline hid_t topiary_h5s_all(void) { return H5S_ALL; }
static inline hid_t topiary_h5t_c_s1(void) { return H5T_C_S1; }
static inline void topiary_h5_silence_errors(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }
