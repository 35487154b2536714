//! The OpenAI tool-call index of each content block of a stream, for the
//! providers that number their blocks (Anthropic's `index`, Bedrock's
//! `contentBlockIndex`) and send a tool call's arguments as deltas of its
//! block.

use tollgate_core::Failure;

use crate::failures::malformed_event;

/// How far past the blocks seen so far a new block's index may be.
const MAX_BLOCK_GAP: usize = 64;

/// Which blocks are tool calls, and which OpenAI index each one has.
#[derive(Debug, Default)]
pub(crate) struct ToolBlocks {
    tool_of_block: Vec<Option<u32>>,
    tools: u32,
}

impl ToolBlocks {
    /// A block starts at `index` (the next one when the provider gave
    /// none): its index.
    ///
    /// # Errors
    ///
    /// An index far past the blocks seen so far: blocks are numbered from
    /// 0 up, one at a time, so it is not the provider's, and must not size
    /// a table.
    pub(crate) fn start(&mut self, index: Option<usize>) -> Result<usize, Failure> {
        let index = index.unwrap_or(self.tool_of_block.len());
        if index > self.tool_of_block.len() + MAX_BLOCK_GAP {
            return Err(malformed_event());
        }
        if self.tool_of_block.len() <= index {
            self.tool_of_block.resize(index + 1, None);
        }
        Ok(index)
    }

    /// The block at `index` (as [`start`](Self::start) returned it) is a
    /// tool call: the next OpenAI tool-call index.
    pub(crate) fn open_tool(&mut self, index: usize) -> u32 {
        let tool = self.tools;
        self.tools += 1;
        if let Some(slot) = self.tool_of_block.get_mut(index) {
            *slot = Some(tool);
        }
        tool
    }

    /// The tool-call index of block `index`, when that block is a tool
    /// call.
    pub(crate) fn tool(&self, index: Option<usize>) -> Option<u32> {
        index.and_then(|i| self.tool_of_block.get(i).copied().flatten())
    }
}
