"""What the local backend offers: its images and the capabilities it declares."""

from __future__ import annotations

from agentbay_mcp.backends.records import Capabilities, ImageInfo

CAPABILITIES = Capabilities(
    process_handles=True, window_states=True, sandbox_side_timeouts=False, desktop=True, egress_rules=True
).model_copy(update={"port_links": True, "contexts": True})  # with bwrap, as root: see capabilities_for

IMAGES: tuple[ImageInfo, ...] = (
    ImageInfo(
        image_id="linux_latest",
        description="Linux with a desktop: shell, files, applications, windows, screenshots.",
        desktop=True,
    ),
    ImageInfo(image_id="code_latest", description="Linux for code: shell and files, no desktop.", desktop=False),
)
