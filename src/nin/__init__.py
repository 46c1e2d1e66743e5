"""nin: Network In Network (Lin, Chen, Yan, ICLR 2014) in PyTorch."""
from .models import NIN, MLPConv, count_params, create_model, list_models

__version__ = "0.1.0"
__all__ = ["NIN", "MLPConv", "create_model", "list_models", "count_params", "__version__"]
