"""Shared set-up of the llama.cpp reference scripts (llama-cpp-python binding)."""
import llama_cpp
import llama_cpp.llama_cpp as C


def cpu_advertises_amx():
    try:
        return " amx_tile " in " " + open("/proc/cpuinfo").read().replace("\n", " ") + " "
    except OSError:
        return False


def configure_extra_buffers(mode):
    """llama.cpp's CPU backend repacks quantized weights into "extra buffer types" (AMX tiles on CPUs that
    advertise AMX). Some virtual machines advertise AMX but trap its instructions (SIGILL in tileloadd when a
    llama.cpp built with -march=native runs a Q8_0/Q4 model). mode "auto" turns extra buffers off exactly when
    /proc/cpuinfo lists amx_tile; "on"/"off" force it. Returns whether they are used."""
    use = {"on": True, "off": False}.get(mode, not cpu_advertises_amx())
    if not use:
        default = C.llama_model_default_params

        def params():
            p = default()
            p.use_extra_bufts = False
            return p

        C.llama_model_default_params = params
    return use


VERSION = llama_cpp.__version__
