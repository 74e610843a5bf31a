# Jupyter server settings for `make lab`, found through JUPYTER_CONFIG_PATH (your own ~/.jupyter is still read).
c = get_config()  # noqa: F821 (provided by traitlets when this file is loaded)

# notebooks/ stay as committed: saved without outputs, execution counts or widget state
c.FileContentsManager.pre_save_hook = "labkit.lab.pre_save_hook"
# the project's kernel is the one offered first
c.MappingKernelManager.default_kernel_name = "labkit"
# kernels talk to the server over CurveZMQ-encrypted sockets (the labkit kernelspec declares support)
c.KernelManager.transport_encryption = "auto"
