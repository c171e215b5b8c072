//! Placeholder (the menus helper replaces this file).
