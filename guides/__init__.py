"""Guide families q(sigma | x) over insertion orders, all with the interface of :class:`ip_pyro.guides.base.OrderGuide`."""
from ip_pyro.guides.base import OrderGuide
from ip_pyro.guides.binary_tree import BinaryTreeGuide
from ip_pyro.guides.exact import ExactPosteriorGuide
from ip_pyro.guides.left_to_right import LeftToRightGuide
from ip_pyro.guides.outside_in import OutsideInGuide
from ip_pyro.guides.plackett_luce import PlackettLuceGuide
from ip_pyro.guides.pointer import PointerGuide
from ip_pyro.guides.right_to_left import RightToLeftGuide
from ip_pyro.guides.sequential import SequentialGuide
from ip_pyro.guides.uniform import UniformOrderGuide
from ip_pyro.guides.registry import FAMILIES, LEARNED, build_guide

__all__ = ["OrderGuide", "UniformOrderGuide", "LeftToRightGuide", "PlackettLuceGuide", "ExactPosteriorGuide",
           "BinaryTreeGuide", "SequentialGuide", "PointerGuide", "RightToLeftGuide", "OutsideInGuide", "FAMILIES", "LEARNED",
           "build_guide"]
