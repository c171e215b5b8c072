//! GSM-7 placeholder (the menus helper replaces this file).
