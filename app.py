"""EWE Lab: the Streamlit app (placeholder until the app issue lands)."""
import streamlit as st

st.set_page_config(page_title="EWE Lab", layout="wide")
st.title("EWE Lab")
st.write("Entangled watermarks against model extraction. The app is being built.")
